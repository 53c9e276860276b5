"""Local emulators of the Databricks serving REST API and the Azure Resource Manager API for APIM.

They stand in for the real services in tests, the demo, benchmarks and ``apimsync emulate``;
the real SDK clients talk to them over real HTTP(S).
"""

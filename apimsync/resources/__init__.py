"""The resources apimsync reads and writes in one APIM service, one module each: its read, its comparison with what
is wanted, and its write (``apis``, ``policies``, ``links``, ``revisions``, ``named_values``; the sync lock is
:mod:`apimsync.lock`). :class:`apimsync.target.ApimTarget` holds one handle per resource.
"""

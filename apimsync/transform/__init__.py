"""The transform pipeline (Databricks OpenAPI 3.1 in, APIM-importable OpenAPI out) and the APIM linter."""

from apimsync.transform.context import TransformContext
from apimsync.transform.lint import Finding, lint
from apimsync.transform.pipeline import Pipeline, default_pipeline, load_pipeline

__all__ = ["Finding", "Pipeline", "TransformContext", "default_pipeline", "lint", "load_pipeline"]

"""The pipeline stages, one module each; their order is `maildesk.pipeline.order.PIPELINE`."""

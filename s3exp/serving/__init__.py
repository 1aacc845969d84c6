"""Serving: the status app, one function from request to response (``_app``), its local
HTTP server (``_server``), and the Lambda events (``_lambda_events``)."""

"""The HTTP edge: the Flask blueprint for the CDS Hooks endpoints, response headers and CORS, the OpenAPI
document, and the glue that puts JWT authentication and Prometheus metrics in front of requests.

Turns HTTP into calls of `service/` and its answers or errors back into HTTP. May import every layer
below it (service, store, pathway, fhir, protocol, security, settings, telemetry, netpolicy); nothing
below imports from here.
"""

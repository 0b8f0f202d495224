# lumbar-pathway-cds: gunicorn with the production configuration, as a non-root user.
#   docker build -t lumbar-pathway-cds .
#   docker run -p 8080:8080 -v /etc/lumbar-cds:/etc/lumbar-cds:ro \
#       -e LUMBAR_CDS_CONFIG=/etc/lumbar-cds/lumbar-cds.toml lumbar-pathway-cds
# It binds 0.0.0.0, so it refuses to start unless the settings trust at least one issuer (or
# LUMBAR_CDS_INSECURE=1 is set knowingly). Migrate the database once per release first:
#   docker run --rm -v ... -e LUMBAR_CDS_CONFIG=... --entrypoint lumbar-cds lumbar-pathway-cds db upgrade
# Not built in this project's CI: no container engine there.

# ---- build: the wheel (it carries the rules inside the package)
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir "build>=1.0"
COPY pyproject.toml README.md ./
COPY cds_hooks ./cds_hooks
COPY rules ./rules
COPY fixtures ./fixtures
RUN python -m build --wheel --outdir /wheels

# ---- runtime: the wheel and its dependencies only, no compilers or sources
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LUMBAR_CDS_DATA_DIR=/var/lib/lumbar-cds \
    PROMETHEUS_MULTIPROC_DIR=/tmp/lumbar-cds-prometheus
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/lumbar-cds lumbar
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER lumbar
WORKDIR /var/lib/lumbar-cds
EXPOSE 8080
# Liveness only (no curl in a slim image); readiness for a load balancer is /readyz.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["gunicorn", "-c", "python:cds_hooks.gunicorn_conf", "--bind", "0.0.0.0:8080", "cds_hooks.app:create_app()"]

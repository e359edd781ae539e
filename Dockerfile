# Aurea server image: multi-stage (wheels built apart, nothing of the build left in the runtime
# layer), runs as a non-root user, health-checked through the telemetry side port's /healthz.
#   docker build -t aurea .
#   docker run -p 50051:50051 -p 8080:8080 -p 9464:9464 -e AUREA_API_KEYS=admin:KEY aurea
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aurea ./aurea
# The otel extra plus the OTLP/HTTP exporter, so [telemetry] otlp_endpoint works in the image.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[redis,otel]" \
        opentelemetry-exporter-otlp-proto-http

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/aurea aurea
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /var/lib/aurea
# Listen on every interface inside the container (API keys are required for that: set
# AUREA_API_KEYS); the side port serves /metrics, /healthz and /readyz.
ENV AUREA_SERVER_HOST=0.0.0.0 \
    AUREA_HTTP_HOST=0.0.0.0 \
    AUREA_TELEMETRY_HTTP_HOST=0.0.0.0 \
    AUREA_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 50051 8080 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["aurea"]
CMD ["serve"]

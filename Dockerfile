# The otelkit collector image: one process, non-root, listening on 0.0.0.0:9090.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY otelkit ./otelkit
COPY collector ./collector
# The collector is an application: it installs with the exact versions of its lock.
RUN pip install -c collector/constraints.txt . ./collector \
    && useradd --system --uid 10001 --home-dir /var/lib/otelkit --create-home otelkit

USER otelkit
ENV OTELKIT_COLLECTOR_HOST=0.0.0.0 \
    OTELKIT_COLLECTOR_PORT=9090 \
    OTELKIT_STATE_FILE=/var/lib/otelkit/state.json
VOLUME ["/var/lib/otelkit"]
EXPOSE 9090

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2)"]

CMD ["otelkit-collector"]

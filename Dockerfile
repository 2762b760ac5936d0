# Production image of visio: signaling + SFU + web client in one process.
# Media uses UDP on ephemeral ports (aioice has no port range): run with host
# networking, and set VISIO_ICE_ANNOUNCE to the host's public address.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VISIO_HOST=0.0.0.0 \
    VISIO_PORT=8080 \
    VISIO_DATA_DIR=/app/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sfu ./sfu
COPY signaling ./signaling
COPY loadtest ./loadtest
COPY web-client ./web-client
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app visio \
    && mkdir -p /app/data && chown visio /app/data
# SQLite bookings live here unless VISIO_DATABASE_URL points at PostgreSQL: mount a volume.
VOLUME ["/app/data"]

USER visio
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VISIO_PORT', '8080'), timeout=2)"
ENTRYPOINT ["visio"]
CMD ["serve"]

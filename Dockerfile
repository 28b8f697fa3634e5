# criteo-proxy container image.
#   docker build -t criteo-proxy .
#   docker run --rm -p 127.0.0.1:8080:8080 \
#     -e CRITEO_CLIENT_ID -e CRITEO_CLIENT_SECRET criteo-proxy
# BASE_IMAGE must be a Debian-like image with python3 (>= 3.11) and its venv
# module; tests/docker/smoke.sh builds with a local debootstrap base instead.
ARG BASE_IMAGE=python:3.12-slim

# --- build: install the package and its dependencies into a venv ------------
FROM ${BASE_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy/ ./proxy/
# [speed]: uvloop; [redis]: several proxies sharing one app on Redis (README "Scaling out").
RUN /opt/venv/bin/pip install --no-cache-dir ".[speed,redis]" \
    && /opt/venv/bin/pip uninstall --yes pip

# --- runtime: the venv only, run as an unprivileged user --------------------
FROM ${BASE_IMAGE}
# CRITEO_PROXY_HOST: inside the container the proxy listens on all interfaces, to be
# reachable through a published port. An environment variable, not a CMD of --host: any
# arguments after the image name (`... criteo-proxy --log-format json`) replace the CMD
# and would silently bind 127.0.0.1. A config file's listen.host and --host still win.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    CRITEO_PROXY_HOST=0.0.0.0
# Fixed uid/gid so that volumes (the token store in ~/.config/criteo-proxy)
# can be chowned from the host; the directory exists so that a named volume
# mounted there starts owned by this user.
RUN groupadd --system --gid 10001 criteo \
    && useradd --system --uid 10001 --gid criteo --create-home \
       --home-dir /home/criteo --shell /usr/sbin/nologin criteo \
    && mkdir -p /home/criteo/.config/criteo-proxy \
    && chown -R criteo:criteo /home/criteo/.config \
    && chmod 700 /home/criteo/.config/criteo-proxy
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/criteo
EXPOSE 8080
# Probes the default port; set CRITEO_PROXY_HEALTH_URL when serving elsewhere.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; url = os.environ.get('CRITEO_PROXY_HEALTH_URL', 'http://127.0.0.1:8080/_proxy/health'); sys.exit(0 if urllib.request.urlopen(url, timeout=3).status == 200 else 1)"]
# Inside the container the proxy listens on all interfaces (it logs a warning
# when no security.api_keys are set): publish the port on loopback only,
# e.g. -p 127.0.0.1:8080:8080. The Host allow-list still applies.
ENTRYPOINT ["criteo-proxy"]
CMD ["run"]

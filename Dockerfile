# MediaOverload: the Discord bot with its pipeline. With MariaDB: docker compose up -d
# (compose.yaml). Alone: docker build -t mediaoverload . && docker run --env-file .env \
#   -v mo-data:/app/data -v mo-output:/app/output -v ./credentials:/app/credentials:ro mediaoverload
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# ffmpeg for media fitting and video frames (imageio-ffmpeg's binary is the fallback)
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 mediaoverload
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY pipeline ./pipeline
COPY strategies ./strategies
COPY comfy ./comfy
RUN pip install .

COPY characters ./characters
COPY workflows ./workflows
RUN mkdir -p data output credentials && chown -R mediaoverload:mediaoverload /app

USER mediaoverload
# credentials/: the platforms' NAME.json files (see docs/publishing.md), never baked in
VOLUME ["/app/data", "/app/output", "/app/credentials"]
# SIGTERM lets running steps save and the bot close cleanly
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]

# syntax=docker/dockerfile:1
# Tailor API and worker image. One image, two commands: `tailor api` (default) and `tailor worker`.
# See docs/deploy.md and docker-compose.temporal.yml.

##### Build: install Tailor and its dependencies into a virtualenv #####
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Explicit sources only: the repo has no .dockerignore, and .venv/, .git/ and .tailor/ (local
# runtime state) must not end up in the image. The trailing * keeps the build working whether or
# not the optional files exist yet.
COPY pyproject.toml README.md* worker.py* ./
COPY tailor ./tailor
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY rag ./rag
# torch from the CPU index first: PyPI's default Linux wheel is a CUDA build of several GB.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install .

##### Runtime #####
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TAILOR_HOME=/var/lib/tailor \
    TAILOR_API_HOST=0.0.0.0 \
    TAILOR_API_PORT=8000

RUN groupadd --system --gid 10001 tailor \
 && useradd --system --uid 10001 --gid tailor --home-dir /home/tailor --create-home \
        --shell /usr/sbin/nologin tailor \
 && install -d -o tailor -g tailor -m 0750 /var/lib/tailor

COPY --from=build /opt/venv /opt/venv

USER tailor
WORKDIR /var/lib/tailor
EXPOSE 8000

CMD ["tailor", "api"]

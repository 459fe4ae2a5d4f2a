# The tfops operator image: `tfops run` on a slim Python, as a non-root user.
# No TensorFlow in it: the operator never imports it (only `tfops inspect` and
# `promote --validate` do, from the tfops[tf] extra on a pipeline's machine).
#   docker build -t tfops/operator:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Wheels of tfops and its dependencies only (no extras).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
COPY --from=build /wheels /wheels
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels tfops \
    && rm -rf /wheels
# The chart runs it with a read-only root filesystem and this user.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["tfops"]
CMD ["run"]

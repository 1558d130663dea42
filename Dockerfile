# One image for every role of a distributed run (docs/distributed.md, "Containers"): the command picks it.
#   master:  surge run SCENARIO --hosts N --master-bind 0.0.0.0 ...
#   worker:  surge worker --master MASTER_HOST:5557 --allow-remote
#   gateway: surge gateway --host 0.0.0.0 --allow-public-bind --state-dir /home/surge/gateway
#   plain Locust (the Kubernetes operator): locust -f /opt/surge/loadtests/locustfile.py ...
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/surge
COPY pyproject.toml README.md ./
COPY mock_gateway ./mock_gateway
COPY loadtests ./loadtests
COPY reports ./reports
COPY runfolder ./runfolder
COPY errortext ./errortext
# surge from this repository (not an editable install: the image holds what was built); the source stays in
# /opt/surge so that the Locust operator can name the locustfile by its path
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin surge

USER 10001
# a worker spools its history under ./surge-spool/, a master writes runs/ here: mount a volume on it
WORKDIR /home/surge/work
EXPOSE 5557 8080
ENTRYPOINT ["surge"]
CMD ["--help"]

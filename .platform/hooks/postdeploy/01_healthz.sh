#!/usr/bin/env bash
# After a deploy, fail the deployment (and let EB roll back) unless the new version answers.
set -euo pipefail
for _ in $(seq 1 30); do
  if curl -fsS --max-time 2 http://127.0.0.1:8000/healthz >/dev/null; then
    exit 0
  fi
  sleep 1
done
echo "Trellis did not answer /healthz on 127.0.0.1:8000 within 30 s" >&2
exit 1

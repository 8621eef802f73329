#!/usr/bin/env sh
# Writes the secrets docker-compose.yml mounts (once; existing files are kept):
#   secrets/console-admin-token  admin token (Alertmanager posts /api/alerts with it)
#   secrets/console-api-key      API key (Prometheus scrapes /metrics with it; clients use it too)
#   secrets/console.env          both, as the console container's environment
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
gen() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
[ -s secrets/console-admin-token ] || gen > secrets/console-admin-token
[ -s secrets/console-api-key ] || gen > secrets/console-api-key
printf 'CONSOLE_ADMIN_TOKEN=%s\nCY_LLM_API_KEY=%s\n' "$(cat secrets/console-admin-token)" "$(cat secrets/console-api-key)" > secrets/console.env
# Prometheus, Alertmanager and Grafana run as their own users in their images: let them read the key files.
chmod 0644 secrets/console-admin-token secrets/console-api-key
chmod 0600 secrets/console.env
echo "secrets written to $(pwd)/secrets"

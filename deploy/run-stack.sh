#!/usr/bin/env bash
# Bring up a one-host mininova in this checkout: config, schema, a base image,
# the four daemons; then boot a first VM and follow it to ACTIVE.
# Expects install-host.sh, start-libvirt.sh, start-controller-services.sh and
# setup-venv.sh to have run (the Makefile's `run` target does that).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE:-$PWD/.state}
VENV=${VENV:-$PWD/.venv}
API=http://127.0.0.1:8774
mkdir -p "$STATE"
CONF=$STATE/mininova.conf
# shellcheck disable=SC1090
. "${MININOVA_CREDENTIALS:-/etc/mininova/credentials}"  # from start-controller-services.sh
if [[ ! -e $CONF ]]; then
    # It holds passwords and a token; the umask stays in the subshell, so the
    # daemons started below create their files with the caller's umask.
    (umask 077; cat > "$CONF") <<CONF
[DEFAULT]
state_path = $STATE
transport_url = rabbit://$RABBIT_USER:$RABBIT_PASSWORD@${RABBIT_HOST:-127.0.0.1}:${RABBIT_PORT:-5672}/

[database]
connection = postgresql+psycopg://$DB_USER:$DB_PASSWORD@${DB_HOST:-127.0.0.1}:${DB_PORT:-5432}/${DB_NAME:-mininova}

[compute]
instances_path = $STATE/instances
image_cache_path = $STATE/_base
network_name = mininova
image_api_url = http://127.0.0.1:8774

[libvirt]
connection_uri = qemu:///system
virt_type = auto
CONF
    echo "run-stack.sh: wrote $CONF"
fi
manage() { "$VENV/bin/mininova-manage" --config-file "$CONF" "$@"; }
manage db sync

# Credentials, like devstack's openrc: an admin, and a demo project with a
# member user; a service user whose token compute sends for image downloads.
CREDS=$STATE/creds
mkdir -p "$CREDS" && chmod 700 "$CREDS"
new_password() {  # USER: a random password in $CREDS/USER.password
    (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))' \
        > "$CREDS/$1.password")
}
user_token() {  # PROJECT USER ROLE [password] -> token (created once, kept in $CREDS)
    if [[ ! -s $CREDS/$2.token ]]; then
        manage project create "$1" >/dev/null 2>&1 || true
        if [[ ${4:-} == password ]]; then
            new_password "$2"
            manage user create "$2" --project "$1" --role "$3" --password-stdin \
                < "$CREDS/$2.password" >/dev/null
        else
            manage user create "$2" --project "$1" --role "$3" >/dev/null
        fi
        manage token create "$2" > "$CREDS/$2.token"
    elif [[ ${4:-} == password && ! -s $CREDS/$2.password ]]; then
        # A state from before passwords: setting one revokes the user's tokens.
        new_password "$2"
        manage user set-password "$2" < "$CREDS/$2.password" >/dev/null
        manage token create "$2" > "$CREDS/$2.token"
    fi
    cat "$CREDS/$2.token"
}
# Passwords are for the OpenStack clients (Keystone v3 under /identity): a
# clouds.yaml with a cloud per user. No floating IPs (no network service):
# without floating_ip_source None, openstacksdk's create_server(wait=True)
# asks Nova for a floating IP pool.
CLOUDS=$STATE/clouds.yaml
echo "clouds:" > "$CLOUDS.tmp" && chmod 600 "$CLOUDS.tmp"
for who in admin:admin:admin demo:demo:member; do
    IFS=: read -r project user role <<< "$who"
    token=$(user_token "$project" "$user" "$role" password)
    printf 'export MININOVA_URL=%s\nexport MININOVA_TOKEN=%s\n' "$API" "$token" \
        > "$STATE/${user}rc"
    cat >> "$CLOUDS.tmp" <<YAML
  mininova-$user:
    auth:
      auth_url: $API/identity/v3
      username: $user
      password: "$(cat "$CREDS/$user.password")"
      project_name: $project
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    floating_ip_source: None
YAML
done
mv "$CLOUDS.tmp" "$CLOUDS"
if ! grep -q '^image_api_token' "$CONF"; then
    token=$(user_token service compute member)
    sed -i "s/^\[compute\]$/[compute]\nimage_api_token = $token/" "$CONF"
fi

# "tiny": the bootable test guest built by deploy/build-tiny-image.sh.
TINY=${MININOVA_TINY_IMAGE:-/var/cache/mininova/tiny.qcow2}
[[ -e $TINY ]] || bash deploy/build-tiny-image.sh "$TINY"
manage image list | grep -q ' tiny ' || manage image add tiny "$TINY"

bash deploy/daemons.sh start "$STATE" "$VENV"

"$VENV/bin/python" - "$API" "$(cat "$CREDS/admin.token")" "$(cat "$CREDS/demo.token")" <<'PY'
import json, sys, time, urllib.request, urllib.error

api, admin_token, demo_token = sys.argv[1:4]

def req(method, path, body=None, token=demo_token):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(api + path, data=data, method=method,
                               headers={"Content-Type": "application/json",
                                        "X-Auth-Token": token})
    with urllib.request.urlopen(r, timeout=10) as resp:
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)

def wait(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if result:
                return result
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            sys.exit("run-stack: timed out waiting for %s" % what)
        time.sleep(0.2)

wait("the API", lambda: req("GET", "/v1")[0] == 200, 30)
print("run-stack: API up at", api)
def compute_up():
    return any(s["binary"] == "mininova-compute" and s["state"] == "up"
               for s in req("GET", "/v1/services", token=admin_token)[1]["services"])
wait("a compute service", compute_up, 60)
name = "first-vm"
vms = req("GET", "/v1/vms")[1]["vms"]
t0 = time.monotonic()
created = not any(v["name"] == name for v in vms)
if created:
    status, body = req("POST", "/v1/vms", {"name": name, "image": "tiny", "flavor": "m1.tiny"})
    print("run-stack: POST /v1/vms ->", status, body["vm"]["id"])
last = None
def poll():
    global last
    vm = req("GET", "/v1/vms/" + name)[1]["vm"]
    if vm["status"] != last:
        last = vm["status"]
        print("run-stack:   %-8s task=%s host=%s" % (vm["status"], vm["task_state"], vm["host"]))
    if vm["status"] == "ERROR":
        sys.exit("run-stack: first VM failed: %s" % vm["fault"])
    return vm if vm["status"] == "ACTIVE" else None
vm = wait("the first VM", poll, 120)
print("run-stack: %s is ACTIVE on %s (power %s)" % (vm["name"], vm["host"], vm["power_state"]))

def booted():
    out = req("GET", "/v1/vms/%s/console?lines=200" % name)[1]["output"]
    marker = [l for l in out.splitlines() if "MININOVA-GUEST-UP" in l]
    vm = req("GET", "/v1/vms/" + name)[1]["vm"]
    ip = vm["addresses"][0]["ip"] if vm["addresses"] else None
    return (marker[-1].strip(), ip) if marker and ip else None
marker, ip = wait("the guest's boot marker and IP", booted, 180)
print("run-stack: console: %s" % marker)
print("run-stack: %s has IP %s%s" % (name, ip, " (%.1f s after the POST)" % (
    time.monotonic() - t0) if created else ""))
PY
echo "run-stack: credentials (source one):  $STATE/adminrc  (admin)   $STATE/demorc  (demo project, member)"
echo "run-stack: try  . $STATE/demorc; curl -s -H \"X-Auth-Token: \$MININOVA_TOKEN\" \$MININOVA_URL/v1/vms"
echo "run-stack: the openstack CLI:  export OS_CLIENT_CONFIG_FILE=$CLOUDS OS_CLOUD=mininova-demo; $VENV/bin/openstack server list"

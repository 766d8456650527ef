#!/usr/bin/env bash
# `make demo`: the sample campaigns end to end against the local sink, which this script starts.
# It sends only once its own sink is listening: if the port is taken by another program, it stops
# before sending anything. CAMPAIGN (the command) and SETTINGS may be set by the caller (tests).
set -euo pipefail
campaign=${CAMPAIGN:-.venv/bin/campaign}
settings=${SETTINGS:-settings.yaml}
port=${DEMO_SINK_PORT:-8025}
outbox=$(dirname "$settings")/outbox
run() { $campaign --settings "$settings" "$@"; }

run check hopitaux-2020-05
run check merci-signataires
run render hopitaux-2020-05
run proof hopitaux-2020-05
run approve hopitaux-2020-05 --by demo --note "make demo"
run proof merci-signataires
run approve merci-signataires --by demo --note "make demo"

# Send both campaigns to the local sink (nothing leaves this machine), then stop the sink.
mkdir -p "$outbox"
$campaign --settings "$settings" sink --port "$port" > "$outbox/sink.out" 2>&1 &  # not via run(): $! must be the sink itself
sink=$!
trap 'kill $sink 2>/dev/null || true; wait $sink 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "sink listening on 127.0.0.1:$port" "$outbox/sink.out" && break
  kill -0 $sink 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "sink listening on 127.0.0.1:$port" "$outbox/sink.out"; then
  cat "$outbox/sink.out" >&2
  echo "make demo: the local sink could not listen on 127.0.0.1:$port (is another program" \
    "using that port? stop it, then run make demo again); nothing was sent" >&2
  exit 1
fi
cat "$outbox/sink.out"
run send hopitaux-2020-05
run send merci-signataires
sleep 0.5  # the sink has written the remote servers' answers into outbox/mailbox by now
# What came back: the sink bounced rebond.* and answered for absence.* (an out-of-office).
run inbox hopitaux-2020-05
run inbox merci-signataires
run status hopitaux-2020-05
run status merci-signataires
echo "received messages: $outbox/sink/new/ (one file per message; open them with any mail client)"

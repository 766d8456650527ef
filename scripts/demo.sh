#!/usr/bin/env bash
# `make demo`: the sample campaigns end to end against the local sink, which this script starts.
# It runs on a fresh copy of the sample project in outbox/demo/ (git-ignored), so the project's own
# files stay as shipped: `campaign inbox` adds the demo's bounces to the copy's suppression list,
# not to recipients/suppression.csv, and a second `make demo` shows the same counts as the first.
# It sends only once its own sink is listening: if the port is taken by another program, it stops
# before sending anything. CAMPAIGN (the command), SETTINGS (the project to copy) and DEMO_DIR (the
# copy, default outbox/demo beside SETTINGS) may be set by the caller (tests).
set -euo pipefail
campaign=${CAMPAIGN:-.venv/bin/campaign}
source_settings=${SETTINGS:-settings.yaml}
project=$(dirname "$source_settings")
demo=${DEMO_DIR:-$project/outbox/demo}
port=${DEMO_SINK_PORT:-8025}

# A fresh copy: only a folder this script made (it holds .campaign-demo) is ever deleted.
if [ -e "$demo" ]; then
  if [ ! -e "$demo/.campaign-demo" ]; then
    echo "make demo: $demo exists and was not made by make demo; move it away first" >&2
    exit 2
  fi
  rm -rf "$demo"
fi
mkdir -p "$demo"
touch "$demo/.campaign-demo"
cp "$source_settings" "$demo/settings.yaml"
cp -R "$project/letters" "$project/recipients" "$demo/"
settings=$demo/settings.yaml
outbox=$demo/outbox
# The copy sends to the demo's own sink: with DEMO_SINK_PORT, its smtp.port (the sample's 8025)
# becomes that port, or the sends would knock at 8025 while the sink listens elsewhere.
if [ -n "${DEMO_SINK_PORT:-}" ]; then
  sed -E "/^smtp:/,/^[^ #]/ s/^(  port:)[[:space:]]*[0-9]+/\1 $port/" "$settings" \
    > "$settings.new"
  mv "$settings.new" "$settings"
  if ! sed -n '/^smtp:/,/^[^ #]/p' "$settings" | grep -Eq "^  port: $port([^0-9]|\$)"; then
    echo "make demo: could not set smtp.port to $port in $settings; set it there yourself" >&2
    exit 2
  fi
fi
echo "make demo: running in a copy of the sample project: $demo"
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
$campaign --settings "$settings" sink --port "$port" > "$outbox/sink.out" 2> "$outbox/sink.err" &  # not via run(): $! must be the sink itself
sink=$!
trap 'kill $sink 2>/dev/null || true; wait $sink 2>/dev/null || true' EXIT
# The sink's first line on stdout says it listens, in the organiser's language, naming its address
# (an error, "cannot listen on 127.0.0.1:PORT", goes to stderr).
listening() { head -n 1 "$outbox/sink.out" | grep -Eq "127\.0\.0\.1:$port([^0-9]|$)"; }
for _ in $(seq 100); do
  listening && break
  kill -0 $sink 2>/dev/null || break
  sleep 0.1
done
if ! listening; then
  cat "$outbox/sink.out" "$outbox/sink.err" >&2
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
run status hopitaux-2020-05 --report "$outbox/hopitaux-2020-05/report.html"
run status merci-signataires
echo "received messages: $outbox/sink/new/ (one file per message; open them with any mail client)"
echo "the organisers' report: $outbox/hopitaux-2020-05/report.html"

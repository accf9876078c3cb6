#!/usr/bin/env bash
# The example office from scratch: import every CSV file of examples/office, apply the
# administrator actions of the story, print the attendance export and the plan, then run
# one `tick`: every email that is due is written to outbox/ as an .eml file.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
registrar() { cargo run --quiet -- --config examples/config.yaml "$@"; }

# The office's signing key for Open Badges credentials, made once (mode 0600, never overwritten).
[ -f examples/office.key ] || registrar keygen examples/office.key >/dev/null
rm -f examples/demo.db examples/demo.db-wal examples/demo.db-shm
rm -rf outbox
for kind in courses parts people enrolments attendance part-results results; do
  registrar import "$kind" "examples/office/$kind.csv"
done
# Lotte's attendance is corrected after she completed (D3: completion stays).
registrar import attendance examples/office/attendance-corrections.csv
# Thijs has an equivalent diploma (D3), Eline's pass is reset (D4).
registrar participant equivalency --course ehbo-2026-03 --person thijs
registrar participant reset --course ehbo-2026-03 --person eline
# Pieter-Jan cancels before the June course starts (D7); Sanne cannot be removed after the start.
registrar participant remove --course ehbo-2027-06 --person pieter-jan
echo "D7 at work: removing Sanne after the course started is refused (as it should be):"
registrar participant remove --course ehbo-2026-03 --person sanne 2>&1 | sed 's/^registrar: /  refused: /' || true

echo
echo "== registrar export attendance --course ehbo-2026-03"
registrar export attendance --course ehbo-2026-03 | if command -v column >/dev/null; then column -s, -t; else cat; fi

echo
echo "== registrar plan (who gets what when, and why the others wait)"
registrar plan

echo
echo "== registrar tick: fire what is due and deliver it (file transport: outbox/)"
registrar tick
echo
echo "== registrar deliveries"
registrar deliveries
echo
echo "== outbox/ (open any .eml in a mail client)"
ls outbox

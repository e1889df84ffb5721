#!/usr/bin/env bash
# tmpcheck.sh CMD… runs CMD and fails if it left new entries in the system temporary
# directory ($TMPDIR, else /tmp): every test must remove what it creates (t.TempDir,
# t.Cleanup, a TestMain for what a package builds or what a killed process leaves). It lists
# the directory before and after, and names what is new. Entries created meanwhile by other
# processes on the machine count too: CI runs on a machine of its own.
set -euo pipefail

tmp="${TMPDIR:-/tmp}"
list() { find "$tmp" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | LC_ALL=C sort; }

before="$(list)"
echo "tmpcheck: $tmp before the tests: $(printf '%s' "$before" | grep -c '' || true) entries"
printf '%s\n' "$before" | sed '/^$/d; s/^/  /'
rc=0
"$@" || rc=$?
after="$(list)"
echo "tmpcheck: $tmp after the tests: $(printf '%s' "$after" | grep -c '' || true) entries"
new="$(LC_ALL=C comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"
if [ -n "$new" ]; then
	echo "tmpcheck: FAIL: the tests left these in $tmp:" >&2
	printf '%s\n' "$new" | sed 's/^/  /' >&2
	[ "$rc" != 0 ] || rc=1
else
	echo "tmpcheck: nothing new in $tmp"
fi
exit "$rc"

#!/usr/bin/env bash
# tmpcheck.sh CMD… runs CMD with a private, empty temporary directory ($TMPDIR) and fails if
# CMD left anything in it: every test must remove what it creates (t.TempDir, t.Cleanup, a
# TestMain for what a package builds or what a killed process leaves). Go's os.TempDir and
# t.TempDir, the private servers and the browser all follow $TMPDIR, so nothing else on the
# machine can make the check fail, and what is left is named.
set -euo pipefail

parent="${TMPDIR:-/tmp}"
tmp="$(mktemp -d "$parent/quotes-tmpcheck-XXXXXX")"
echo "tmpcheck: running with TMPDIR=$tmp"
rc=0
TMPDIR="$tmp" "$@" || rc=$?
left="$(find "$tmp" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | LC_ALL=C sort)"
if [ -n "$left" ]; then
	echo "tmpcheck: FAIL: the tests left these in their TMPDIR ($tmp, kept for inspection):" >&2
	printf '%s\n' "$left" | sed 's/^/  /' >&2
	[ "$rc" != 0 ] || rc=1
else
	echo "tmpcheck: the tests left nothing in their TMPDIR"
	rmdir "$tmp"
fi
exit "$rc"

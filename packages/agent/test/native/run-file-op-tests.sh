#!/usr/bin/env bash
# Builds the agent's file operations with file-op-main.c into a temporary
# directory and checks their behaviour (PROTOCOL.md, Operations) against
# GNU tar: one line per check, non-zero exit when any fails. Run as root
# for the owner, device and xattr checks. PERF_MB sets the size of the
# throughput file (default 300).
set -uo pipefail
shopt -s lastpipe # `... | run OP` keeps the END it read

here=$(cd "$(dirname "$0")" && pwd)
native=$(cd "$here/../../native" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=$work/fileop
gcc -O2 -Wall -Wextra -static -D_FILE_OFFSET_BITS=64 -o "$bin" \
  "$native/agent-files.c" "$native/agent-tar.c" "$native/agent-util.c" "$here/file-op-main.c" 2>"$work/cc.log" ||
  { cat "$work/cc.log"; exit 1; }

failures=0
check() {
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}

# run OP ARGS... : runs an operation; its END payload lands in $end with NULs shown as '|'.
end=
run() {
  "$bin" "$@" 3>"$work/end.raw"
  end=$(tr '\0' '|' <"$work/end.raw")
}
ends_with() { [[ $end == "$1" ]] || { echo "     END was: $end" >&2; return 1; }; }
ends_like() { [[ $end =~ $1 ]] || { echo "     END was: $end" >&2; return 1; }; }

# A listing of a tree (type, mode, owner, size, link target, content hash, xattrs) to compare two trees.
# Sockets are never archived; XATTRS=0 leaves extended attributes out (GNU format has none).
describe() {
  (cd "$1" && find . -mindepth 1 ! -type s -printf '%P %y %m %U:%G %l\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum &&
    if [[ ${XATTRS:-1} == 1 ]]; then getfattr -R -d -m - . 2>/dev/null | grep -v '^#' | grep -v security.selinux; fi)
}
same_tree() { diff <(describe "$1") <(describe "$2") >&2; }
empty_dir() { [[ -d $1 && -z $(ls -A "$1") ]]; }

t=$work/t
mkdir -p "$t"

# ---- write ----
echo hello | run write "$t/w/new/f" 4755 1234 5678
check "write: ok" ends_with "ok|"
check "write: content" [ "$(cat "$t/w/new/f")" = hello ]
check "write: setuid mode survives chown" [ "$(stat -c %a "$t/w/new/f")" = 4755 ]
if [[ $(id -u) == 0 ]]; then check "write: owner" [ "$(stat -c %u:%g "$t/w/new/f")" = 1234:5678 ]; fi
check "write: parents 0755 root" [ "$(stat -c %a:%u "$t/w/new")" = 755:0 ]
echo target >"$t/w/real"
ln -s real "$t/w/link"
echo through | run write "$t/w/link" 640 0 0
check "write: final symlink followed" [ "$(cat "$t/w/real")" = through ] && [ -L "$t/w/link" ]
ln -s missing/deeper "$t/w/dangling"
echo x | run write "$t/w/dangling" 644 0 0
check "write: dangling symlink creates its target" [ "$(cat "$t/w/missing/deeper")" = x ]
: | run write "$t/w/empty" 600 0 0
check "write: empty file" [ -f "$t/w/empty" ] && [ ! -s "$t/w/empty" ]
mkdir "$t/w/dir"
echo x | run write "$t/w/dir" 644 0 0
check "write: directory is CONFLICT" ends_like '^error\|CONFLICT\|'
echo x | run write relative 644 0 0
check "write: relative path is INVALID" ends_like '^error\|INVALID\|'
echo old >"$t/w/killed"
(printf partial; sleep 3) | "$bin" write "$t/w/killed" 644 0 0 3>"$work/end.raw" &
pid=$!
sleep 0.5
kill -TERM $pid 2>/dev/null
wait $pid
check "write: SIGTERM keeps the old file" [ "$(cat "$t/w/killed")" = old ]
check "write: SIGTERM leaves no temporary file" [ -z "$(ls -A "$t/w" | grep execenv)" ]
check "write: no temporary file after success" [ -z "$(find "$t/w" -name '.execenv-*')" ]

# ---- read ----
run read "$t/w/new/f" >"$work/out"
check "read: content" [ "$(cat "$work/out")" = hello ]
check "read: mode and size" ends_with "ok|mode=4755|size=6|"
run read "$t/w/link" >"$work/out"
check "read: follows symlinks" [ "$(cat "$work/out")" = through ]
run read "$t/w/dir" >/dev/null
check "read: directory is INVALID" ends_like '^error\|INVALID\|'
run read "$t/w/nothing" >/dev/null
check "read: missing is NOT_FOUND" ends_like '^error\|NOT_FOUND\|'

# ---- stat ----
touch -d @1700000000.123456789 "$t/w/real"
run stat "$t/w/real" 0
check "stat: file fields" ends_like '^ok\|type=file\|mode=640\|uid=0\|gid=0\|size=8\|mtime=1700000000\.123456789\|$'
run stat "$t/w/link" 0
check "stat: symlink with target" ends_like '^ok\|type=symlink\|mode=777\|.*\|target=real\|$'
run stat "$t/w/link" 1
check "stat: follow gives the target" ends_like '^ok\|type=file\|'
run stat "$t/w/dir" 1
check "stat: directory" ends_like '^ok\|type=directory\|mode=755\|'
mkfifo "$t/w/fifo"
run stat "$t/w/fifo" 0
check "stat: fifo is other" ends_like '^ok\|type=other\|'
run stat "$t/w/nothing" 0
check "stat: missing is NOT_FOUND" ends_like '^error\|NOT_FOUND\|'

# ---- readdir ----
mkdir -p "$t/rd" && touch "$t/rd/a" "$t/rd/b c" && mkdir "$t/rd/d"
run readdir "$t/rd" >"$work/out"
check "readdir: names" [ "$(tr '\0' '\n' <"$work/out" | sort | tr '\n' ,)" = "a,b c,d," ]
check "readdir: ok" ends_with "ok|"
run readdir "$t/rd/a" >/dev/null
check "readdir: file is INVALID" ends_like '^error\|INVALID\|'
run readdir "$t/rd/none" >/dev/null
check "readdir: missing is NOT_FOUND" ends_like '^error\|NOT_FOUND\|'

# ---- mkdir, remove ----
run mkdir "$t/mk/a/b/c" 750
check "mkdir: -p with mode" [ "$(stat -c %a "$t/mk/a/b/c")" = 750 ] && [ "$(stat -c %a "$t/mk/a")" = 755 ]
run mkdir "$t/mk/a/b/c" 700
check "mkdir: existing directory is ok" ends_with "ok|"
run mkdir "$t/rd/a" 755
check "mkdir: existing file is CONFLICT" ends_like '^error\|CONFLICT\|'
mkdir -p "$t/rm/tree/x/y" "$t/keep" && echo keep >"$t/keep/f" && ln -s "$t/keep" "$t/rm/tree/x/y/out" &&
  ln -s "$t/keep/f" "$t/rm/flink" && touch "$t/rm/tree/x/y/f"
run remove "$t/rm/flink"
check "remove: symlink, not its target" [ ! -L "$t/rm/flink" ] && [ -f "$t/keep/f" ]
run remove "$t/rm/tree"
check "remove: tree, never through symlinks" [ ! -e "$t/rm/tree" ] && [ -f "$t/keep/f" ]
run remove "$t/rm/none"
check "remove: missing is ok" ends_with "ok|"
# Six steps of 500 levels: each relative path stays under PATH_MAX, the whole does not.
chunk=$(printf 'ab/%.0s' $(seq 500))
(cd "$t/rm" && for _ in 1 2 3 4 5 6; do mkdir -p "$chunk" && cd "$chunk" || exit 1; done && touch f && ln -s / l)
depth=$(cd "$t/rm" && find ab -depth -name f -printf '%d\n')
check "remove: built a 3000-level tree (path $((depth * 3)) bytes)" [ "$depth" = 3000 ]
(ulimit -n 64 && run remove "$t/rm/ab" && ends_with "ok|")
check "remove: 3000-level tree with 64 descriptors" [ ! -e "$t/rm/ab" ]

# ---- tar-out ----
src=$t/src
mkdir -p "$src/sub/deeper" "$src/empty-dir"
echo alpha >"$src/a"
: >"$src/empty"
head -c 100000 /dev/urandom >"$src/sub/big"
ln "$src/a" "$src/sub/hard"
ln -s ../a "$src/sub/rel-link"
ln -s /etc/passwd "$src/abs-link"
long=$(printf 'd%.0s' $(seq 60))/$(printf 'e%.0s' $(seq 60))/$(printf 'f%.0s' $(seq 75))
mkdir -p "$src/$(dirname "$long")" && echo long >"$src/$long"
ln -s "$(printf 'x%.0s' $(seq 150))" "$src/long-link"
echo suid >"$src/suid" && chmod 4755 "$src/suid"
chmod 1777 "$src/empty-dir"
setfattr -n user.x -v 1 "$src/a" 2>/dev/null && has_xattr=1 || has_xattr=0
mkfifo "$src/fifo"
if [[ $(id -u) == 0 ]]; then mknod "$src/null" c 1 3 && chown 4000000:3 "$src/sub/big"; fi
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$src/sock"
touch -d @1600000000 "$src/sub"
run tar-out "$src" >"$work/out.tar"
check "tar-out: ok with entries and bytes" ends_like '^ok\|entries=[0-9]+\|bytes=100[0-9]+\|$'
tar -tvf "$work/out.tar" >"$work/list" 2>&1
check "tar-out: GNU tar lists it" [ $? = 0 ]
check "tar-out: . first, then sorted names" [ "$(tar -tf "$work/out.tar" | head -3 | tr '\n' ,)" = ".,a,abs-link," ]
check "tar-out: hardlink to the first name" grep -q 'sub/hard link to a' "$work/list"
check "tar-out: sockets skipped" bash -c "! grep -q sock '$work/list'"
mkdir "$t/x1"
tar --xattrs --xattrs-include='*' -C "$t/x1" -xf "$work/out.tar"
check "tar-out: GNU tar extracts an identical tree" same_tree "$src" "$t/x1"
check "tar-out: 200-char path" [ "$(cat "$t/x1/$long")" = long ]
check "tar-out: directory mtime" [ "$(stat -c %Y "$t/x1/sub")" = 1600000000 ]
if [[ $has_xattr == 1 ]]; then check "tar-out: xattr" [ "$(getfattr --only-values -n user.x "$t/x1/a" 2>/dev/null)" = 1 ]; fi
echo single >"$t/single"
ln -s single "$t/single-link"
run tar-out "$t/single-link" | tar -tf - >"$work/list"
check "tar-out: a file (through a final symlink) is one entry named after the path" [ "$(cat "$work/list")" = single-link ]
run tar-out "$t/none" >/dev/null
check "tar-out: missing is NOT_FOUND" ends_like '^error\|NOT_FOUND\|'

# ---- tar-in ----
rm -f "$src/sock"
tar -C "$src" -cf - . | run tar-in "$t/in-gnu/made"
check "tar-in: GNU format ok" ends_like '^ok\|entries=[0-9]+\|bytes=100[0-9]+\|$'
check "tar-in: GNU format tree identical (but xattrs)" env XATTRS=0 bash -c "$(declare -f describe same_tree); same_tree \"\$@\"" _ "$src" "$t/in-gnu/made"
check "tar-in: hardlink shares the inode" [ "$(stat -c %i "$t/in-gnu/made/a")" = "$(stat -c %i "$t/in-gnu/made/sub/hard")" ]
check "tar-in: directory mtime" [ "$(stat -c %Y "$t/in-gnu/made/sub")" = 1600000000 ]
tar --format=pax --xattrs --xattrs-include='*' -C "$src" -cf - . | run tar-in "$t/in-pax"
check "tar-in: pax format ok" ends_like '^ok\|'
check "tar-in: pax tree identical (xattrs, setuid, owners)" same_tree "$src" "$t/in-pax"
run tar-out "$src" | run tar-in "$t/in-own"
check "tar-in: its own tar-out round trip" same_tree "$src" "$t/in-own"
mkdir -p "$t/outside" "$t/repl" && echo victim >"$t/outside/victim" && ln -s "$t/outside/victim" "$t/repl/a"
tar -C "$src" -cf - a | run tar-in "$t/repl"
check "tar-in: replaces a symlink, never writes through it" [ "$(cat "$t/outside/victim")" = victim ] &&
  [ ! -L "$t/repl/a" ] && [ "$(cat "$t/repl/a")" = alpha ]
mkdir -p "$t/repl2/etc"
(cd "$t" && mkdir -p mk2 && echo x >mk2/etc && tar -C mk2 -cf - etc) | run tar-in "$t/repl2"
check "tar-in: a file over an existing directory is CONFLICT" ends_like '^error\|CONFLICT\|'

# Hostile archives, built with python's tarfile. Each goes into a fresh destination
# (dest-N, missing before: it must be gone after) and an existing one holding a marker.
hostile() {
  python3 - "$@" <<'EOF'
import io, sys, tarfile
out, spec = sys.argv[1], sys.argv[2:]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for item in spec:
        kind, name, *rest = item.split(":", 2)
        ti = tarfile.TarInfo(name)
        data = None
        if kind == "f":
            body = (rest[0] if rest else "x").encode()
            ti.size, data = len(body), io.BytesIO(body)
        elif kind == "d":
            ti.type = tarfile.DIRTYPE
        elif kind == "s":
            ti.type, ti.linkname = tarfile.SYMTYPE, rest[0]
        elif kind == "h":
            ti.type, ti.linkname = tarfile.LNKTYPE, rest[0]
        t.addfile(ti, data)
EOF
}
n=0
expect_refused() {
  local code=$1 label=$2
  shift 2
  n=$((n + 1))
  hostile "$work/h$n.tar" "$@"
  run tar-in "$t/h/fresh$n/dest" <"$work/h$n.tar"
  local e1=$end
  mkdir -p "$t/h/old$n/dest" && echo marker >"$t/h/old$n/dest/marker"
  run tar-in "$t/h/old$n/dest" <"$work/h$n.tar"
  check "tar-in refuses $label with $code, leaves nothing" \
    bash -c "[[ '$e1' == error\|$code\|* && '$end' == error\|$code\|* ]] && [ ! -e '$t/h/fresh$n' ] &&
      [ \"\$(ls -A '$t/h/old$n/dest')\" = marker ] && [ \"\$(ls -A '$t/h/old$n')\" = dest ] &&
      [ ! -e '$t/h/x' ] && [ ! -e /x-execenv-test ]" || echo "     ENDs: $e1 / $end" >&2
}
expect_refused UNSAFE_PATH "../x" f:good f:../x
expect_refused UNSAFE_PATH "a/../../x" f:good d:a f:a/../../x
expect_refused UNSAFE_PATH "/abs" f:good f:/x-execenv-test
expect_refused UNSAFE_PATH "symlink a -> .." f:good s:a:..
expect_refused UNSAFE_PATH "symlink a -> b/../.." f:good s:a:b/../..
expect_refused UNSAFE_PATH "an entry below an archive symlink" f:good s:a:. f:a/x
expect_refused UNSAFE_PATH "a hardlink to a missing entry" f:good h:b:nothing
expect_refused UNSAFE_PATH "a hardlink outside" f:good h:b:../x
expect_refused UNSAFE_PATH ". as a file" f:good f:.
expect_refused CONFLICT "dir d then symlink d" f:good d:d f:d/in s:d:/tmp
expect_refused CONFLICT "file f then dir f" f:good f:f d:f
python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[148:156]=b"0000000\0"; open(sys.argv[1],"wb").write(b)' "$work/h1.tar"
run tar-in "$t/h/badsum" <"$work/h1.tar"
check "tar-in: bad checksum is INVALID" ends_like '^error\|INVALID\|'
hostile "$work/ok.tar" f:good s:sub/up:../good s:abs:/etc/passwd d:sub h:sub/hl:good
run tar-in "$t/h/fine" <"$work/ok.tar"
check "tar-in: safe symlinks and hardlinks accepted" ends_with "ok|entries=5|bytes=1|"
head -c $(($(stat -c %s "$work/out.tar") / 2)) "$work/out.tar" >"$work/trunc.tar"
run tar-in "$t/h/trunc" <"$work/trunc.tar"
check "tar-in: truncated archive fails and leaves nothing" bash -c "[[ '$end' == error\|INVALID\|* ]] && [ ! -e '$t/h/trunc' ]"
(head -c 200000 "$work/out.tar"; sleep 3) | "$bin" tar-in "$t/h/killed" 3>/dev/null &
pid=$!
sleep 0.7
kill -TERM $pid 2>/dev/null
wait $pid
check "tar-in: SIGTERM removes what it created" [ ! -e "$t/h/killed" ]

# ---- throughput ----
mb=${PERF_MB:-300}
rm -rf "$t/perf" && mkdir -p "$t/perf/src"
head -c $((mb * 1024 * 1024)) /dev/urandom >"$t/perf/src/big"
sum=$(sha256sum <"$t/perf/src/big")
sync
# Each timing starts with no dirty pages, so writeback of the previous run does not count.
seconds() { sync; local s=$EPOCHREALTIME; "$@"; awk "BEGIN{printf \"%.3f\", $EPOCHREALTIME - $s}"; }
gnu=$(seconds bash -c "tar -C '$t/perf/src' -cf - . | (mkdir -p '$t/perf/gnu' && tar -C '$t/perf/gnu' -xf -)")
out=$(seconds bash -c "'$bin' tar-out '$t/perf/src' 3>/dev/null >/dev/null")
outp=$(seconds bash -c "'$bin' tar-out '$t/perf/src' 3>/dev/null | cat >/dev/null")
"$bin" tar-out "$t/perf/src" 3>/dev/null >"$t/perf/a.tar"
in=$(seconds bash -c "cat '$t/perf/a.tar' | '$bin' tar-in '$t/perf/in' 3>/dev/null")
both=$(seconds bash -c "'$bin' tar-out '$t/perf/src' 3>/dev/null | '$bin' tar-in '$t/perf/both' 3>/dev/null")
check "perf: ${mb} MB content intact through tar-out | tar-in" [ "$(sha256sum <"$t/perf/both/big")" = "$sum" ]
check "perf: ${mb} MB content intact through tar-in" [ "$(sha256sum <"$t/perf/in/big")" = "$sum" ]
rate() { awk "BEGIN{printf \"%.0f MB/s\", $mb / $1}"; }
echo "info tar-out to /dev/null $(rate "$out"), to a pipe $(rate "$outp"); tar-in from a pipe $(rate "$in");" \
  "tar-out | tar-in $(rate "$both"); GNU tar -cf - | tar -xf - $(rate "$gnu")"

echo "$failures failed"
[[ $failures == 0 ]]

#!/bin/sh
# Coverage-guided fuzzing of kt_peek.c (the native first-flight parser and
# hostname matcher) with libFuzzer + ASAN + UBSan. Not part of npm test: it
# needs clang (Debian: apt-get install -y clang). See README.md.
#
#   test/native-peek/fuzz/run.sh [SECONDS] [WORKDIR]     (defaults: 600, /tmp/kt-peek-fuzz)
set -eu
secs=${1:-600}
work=${2:-/tmp/kt-peek-fuzz}
repo=$(cd "$(dirname "$0")/../../.." && pwd)
mkdir -p "$work/corpus" "$work/seeds" "$work/crashes"
cp "$repo"/test/fuzz/corpus/*.bin "$repo"/test/fixtures/flights/*.bin "$work/seeds/"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I "$repo/src/dataplane/native" "$repo/src/dataplane/native/kt_peek.c" "$repo/test/native-peek/fuzz/peek_fuzz.c" \
  -o "$work/peek_fuzz"
# One job (the machine's cores are shared); libFuzzer writes fuzz-0.log into the
# current directory with -jobs, so run from the work directory.
cd "$work"
./peek_fuzz -max_total_time="$secs" -jobs=1 -max_len=18000 -dict="$repo/test/native-peek/fuzz/peek.dict" \
  -artifact_prefix="$work/crashes/" -print_final_stats=1 "$work/corpus" "$work/seeds" || true
tail -n 12 "$work/fuzz-0.log"
ls "$work/crashes"
# Line coverage of kt_peek.c over the corpus, when llvm-profdata/llvm-cov are installed.
if command -v llvm-profdata >/dev/null 2>&1 && command -v llvm-cov >/dev/null 2>&1; then
  clang -O0 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
    -I "$repo/src/dataplane/native" "$repo/src/dataplane/native/kt_peek.c" "$repo/test/native-peek/fuzz/peek_fuzz.c" \
    -o "$work/peek_cov"
  LLVM_PROFILE_FILE="$work/cov.profraw" ./peek_cov -runs=0 "$work/corpus" "$work/seeds" >/dev/null 2>&1
  llvm-profdata merge -sparse "$work/cov.profraw" -o "$work/cov.profdata"
  llvm-cov report "$work/peek_cov" -instr-profile="$work/cov.profdata" "$repo/src/dataplane/native/kt_peek.c"
fi

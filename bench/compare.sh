#!/usr/bin/env bash
# Side-by-side performance comparisons of caddy-tagcache with its peers on
# this machine, all on 127.0.0.1. See bench/README.md.
#
#	bench/compare.sh [memcached|http|tags|memory|redis|all]
#
# Environment: ROUNDS (alternated rounds per case, default 3), DURATION
# (seconds per run, default 10), RESULTS (directory for the result files,
# default bench/results), CADDY (a prebuilt Caddy with this plugin instead of
# building cmd/caddy).
set -euo pipefail

usage() { echo "usage: $0 [memcached|http|tags|memory|redis|all]" >&2; exit 2; }
WORKLOAD=${1:-all}
case $WORKLOAD in memcached | http | tags | memory | redis | all) ;; *) usage ;; esac
[[ $# -le 1 ]] || usage

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "ROUNDS must be 1 to 99" >&2; exit 2; }
[[ $DURATION =~ ^[1-9][0-9]?$ ]] || { echo "DURATION must be 1 to 99 seconds" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=${RESULTS:-$REPO/bench/results}
COMMAND="$(for v in ROUNDS DURATION CADDY; do [[ -n ${!v:-} ]] && printf '%s=%q ' "$v" "${!v}"; done; true)bench/compare.sh $WORKLOAD"

# Ports, all on 127.0.0.1.
PORT_TC_MEMCACHED=19601 # tagcache, listen memcached
PORT_MEMCACHED=19602    # memcached
PORT_TC_TAB=19603       # tagcache, listen tcp (tab protocol)
PORT_TC_RESP=19604      # tagcache, listen resp
PORT_REDIS=19605        # redis-server
PORT_ORIGIN=19610       # plain Caddy: respond, and the origin of both caches
PORT_TC_HTTP=19611      # Caddy with the tagcache directive
PORT_VARNISH=19612      # varnishd
PORT_VARNISH_CLI=19613  # varnishd's management interface

WORK=$(mktemp -d /tmp/tagcache-compare.XXXXXX)
SERVERS=() # pids of the servers we started

stop_servers() {
	local pid
	for pid in "${SERVERS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${SERVERS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	SERVERS=()
}
cleanup() {
	local rc=$?
	stop_servers
	if [[ $rc -eq 0 ]]; then
		rm -rf "$WORK"
	else
		echo "compare.sh: logs kept in $WORK" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

install_peers() {
	local missing=() pair
	for pair in memcached:memcached varnishd:varnish wrk:wrk memcaslap:libmemcached-tools curl:curl redis-server:redis-server redis-benchmark:redis-tools; do
		command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	log "installing ${missing[*]}"
	local sudo=()
	[[ $(id -u) -eq 0 ]] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
	mkdir -p "$WORK/bin"
	if [[ -n ${CADDY:-} ]]; then
		cp "$CADDY" "$WORK/bin/caddy"
	else
		log "building cmd/caddy"
		(cd "$REPO" && go build -o "$WORK/bin/caddy" ./cmd/caddy)
	fi
	(cd "$REPO" && go build -o "$WORK/bin/tagcache-bench" ./cmd/tagcache-bench && go build -o "$WORK/bin/tagload" ./bench/tagload)
	# The tree as built: it may change while the workloads run.
	TREE=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
	[[ -z ${CADDY:-} ]] || TREE="$TREE (Caddy from $CADDY)"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port NAME PID PORT
wait_port() {
	local i
	for i in $(seq 100); do
		port_free "$3" || return 0
		kill -0 "$2" 2>/dev/null || die "$1 exited: $(tail -5 "$WORK/$1.log")"
		sleep 0.1
	done
	die "$1 does not listen on 127.0.0.1:$3 after 10 s"
}

# start NAME PORT COMMAND... runs a server in the background, records its pid
# in the variable NAME_PID and waits for its port.
start() {
	local name=$1 port=$2
	shift 2
	port_free "$port" || die "127.0.0.1:$port is in use"
	"$@" >"$WORK/$name.log" 2>&1 &
	SERVERS+=($!)
	printf -v "${name}_PID" '%s' "$!"
	wait_port "$name" "$!" "$port"
}

# SERVER_CPUS and CLIENT_CPUS, when set, are taskset CPU lists that the
# servers started next and the load generators are confined to.
SERVER_CPUS=""
CLIENT_CPUS=""
on_cpus() { if [[ -n $1 ]]; then echo taskset -c "$1"; fi; }

# start_caddy NAME PORT CADDYFILE-TEXT: GOMAXPROCS unset, data and config in
# the work directory.
start_caddy() {
	printf '%s\n' "$3" >"$WORK/$1.Caddyfile"
	start "$1" "$2" $(on_cpus "$SERVER_CPUS") env -u GOMAXPROCS XDG_DATA_HOME="$WORK/$1.data" XDG_CONFIG_HOME="$WORK/$1.config" \
		"$WORK/bin/caddy" run --adapter caddyfile --config "$WORK/$1.Caddyfile"
}

start_memcached() {
	start memcached "$PORT_MEMCACHED" $(on_cpus "$SERVER_CPUS") memcached -u nobody -l 127.0.0.1 -p "$PORT_MEMCACHED" -t 2 -m 1024 -c 4096 -U 0
}

# The pid and its children (varnishd's worker is a child of its manager).
tree() { echo "$1" $(pgrep -P "$1" || true); }

# cpu_ticks PID: user+system CPU of the process and its children, in 1/100 s.
cpu_ticks() {
	local pid total=0 f
	for pid in $(tree "$1"); do
		f=$(sed 's/.*) //' "/proc/$pid/stat") || continue
		read -r -a f <<<"$f"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}

# status_kb PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) summed over the
# process and its children, in KiB.
status_kb() {
	local pid total=0 v
	for pid in $(tree "$1"); do
		v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# The per-run records of the current workload: case, server, round, ops/s,
# p50 us, p99 us, server CPU s per million operations ("-" where not known).
record() {
	[[ $4 =~ ^[0-9]+$ && $4 -gt 0 ]] || die "no throughput in the output of $2 ($1, round $3); see $WORK/raw.txt"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/runs.tsv"
}

# tcbench CASE SERVER ROUND PID ADDR ARGS...: one tagcache-bench run.
tcbench() {
	local case=$1 server=$2 round=$3 pid=$4 addr=$5 out
	shift 5
	out=$($(on_cpus "$CLIENT_CPUS") "$WORK/bin/tagcache-bench" -addr "$addr" -server-pid "$pid" -duration "${DURATION}s" "$@") ||
		die "tagcache-bench against $server failed: $out"
	echo "$out" >>"$WORK/raw.txt"
	record "$case" "$server" "$round" \
		"$(awk '/^ops / { for (i = 1; i <= NF; i++) if ($i == "ops/s") print $(i - 1) }' <<<"$out")" \
		"$(awk '/^latency us/ { print $4 }' <<<"$out")" \
		"$(awk '/^latency us/ { print $8 }' <<<"$out")" \
		"$(awk '/^server cpu/ { print $4 }' <<<"$out")"
}

# wrkrun CASE SERVER ROUND PID URL: one wrk run; latencies in us.
wrkrun() {
	local case=$1 server=$2 round=$3 pid=$4 url=$5 out before after
	before=$(cpu_ticks "$pid")
	out=$(wrk -t1 -c50 -d"${DURATION}s" --latency "$url")
	after=$(cpu_ticks "$pid")
	printf '%s %s round %s\n%s\n' "$server" "$url" "$round" "$out" >>"$WORK/raw.txt"
	! grep -q 'Non-2xx' <<<"$out" || die "$server answered errors: $out"
	record "$case" "$server" "$round" "$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")" \
		"$(wrk_latency 50% "$out")" "$(wrk_latency 99% "$out")" \
		"$(awk -v t=$((after - before)) '/ requests in / { printf "%.2f", t / 100 / $1 * 1e6 }' <<<"$out")"
}
wrk_latency() {
	awk -v q="$1" '$1 == q && NF == 2 {
		v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
		printf "%.1f", v * (u == "us" ? 1 : u == "ms" ? 1e3 : u == "s" ? 1e6 : -1)
	}' <<<"$2"
}

# memcaslap_run CASE SERVER ROUND PID ADDR VALUE: one memcaslap run, 1:10
# set:get; it reports no latency percentiles.
memcaslap_run() {
	local case=$1 server=$2 round=$3 pid=$4 addr=$5 value=$6 out before after
	printf 'key\n16 16 1\nvalue\n%s %s 1\ncmd\n0 0.0909\n1 0.9091\n' "$value" "$value" >"$WORK/memcaslap.cfg"
	before=$(cpu_ticks "$pid")
	out=$(timeout $((DURATION + 30)) memcaslap -s "$addr" -T 2 -c 50 -t "${DURATION}s" -F "$WORK/memcaslap.cfg" 2>&1)
	after=$(cpu_ticks "$pid")
	printf '%s memcaslap round %s\n%s\n' "$server" "$round" "$out" >>"$WORK/raw.txt"
	# memcaslap counts error replies as operations: a run with any, or with
	# gets that missed keys it had set, measures nothing.
	! grep -q 'ERROR' <<<"$out" || die "$server answered memcaslap with errors: $(grep -m3 ERROR <<<"$out")"
	grep -q '^get_misses: 0$' <<<"$out" || die "$server missed keys memcaslap had set: $(grep get_misses <<<"$out")"
	# Run time: 10.0s Ops: 1234567 TPS: 123456 Net_rate: 20.8M/s
	record "$case" "$server" "$round" "$(awk '/^Run time:/ { print $7 }' <<<"$out")" - - \
		"$(awk -v t=$((after - before)) '/^Run time:/ { printf "%.2f", t / 100 / $5 * 1e6 }' <<<"$out")"
}

# redisbench CASE SERVER ROUND PID PORT TEST PIPELINE REQUESTS: one
# redis-benchmark run of one test with 50 clients over 10,000 keys.
redisbench() {
	local case=$1 server=$2 round=$3 pid=$4 port=$5 test=$6 pipeline=$7 n=$8 out line before after
	before=$(cpu_ticks "$pid")
	out=$(timeout 300 redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$n" -c 50 -P "$pipeline" -r 10000 --csv 2>&1)
	after=$(cpu_ticks "$pid")
	printf '%s %s round %s\n%s\n' "$server" "$case" "$round" "$out" >>"$WORK/raw.txt"
	# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
	line=$(grep -v '^"test"' <<<"$out" | grep '^"' | head -1 | tr -d '"')
	record "$case" "$server" "$round" "$(cut -d, -f2 <<<"$line" | cut -d. -f1)" \
		"$(awk -F, '{ printf "%.1f", $5 * 1000 }' <<<"$line")" "$(awk -F, '{ printf "%.1f", $7 * 1000 }' <<<"$line")" \
		"$(awk -v t=$((after - before)) -v n="$n" 'BEGIN { printf "%.2f", t / 100 / n * 1e6 }')"
}

# AWK_MEDIAN defines median(s) for awk programs: the median of the numbers in
# the space-separated string s, "-" if it has none.
AWK_MEDIAN='
function median(s,   a, k, i, j, t) {
	k = split(s, a, " ")
	if (k == 0) return "-"
	for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
'

# table: medians of runs.tsv per case and server, then a ratio row, first
# server over each other server, for each case.
table() {
	awk -F'\t' "$AWK_MEDIAN"'
	function fmt(v, d) { return v == "-" ? "-" : sprintf("%." d "f", v) }
	function ratio(a, b) { return a == "-" || b == "-" || b == 0 ? "-" : sprintf("%.2f", a / b) }
	{
		if (!($1 in seen)) { seen[$1] = 1; cases[++ncases] = $1 }
		if (!(($1, $2) in seenserver)) { seenserver[$1, $2] = 1; servers[$1, ++nservers[$1]] = $2 }
		runs[$1, $2]++
		for (m = 4; m <= 7; m++) if ($m != "-" && $m != "") vals[$1, $2, m] = vals[$1, $2, m] " " $m
	}
	END {
		print "| case | server | runs | ops/s | p50 µs | p99 µs | CPU s per 1M ops |"
		print "|---|---|---|---|---|---|---|"
		for (c = 1; c <= ncases; c++) {
			k = cases[c]
			for (s = 1; s <= nservers[k]; s++) {
				sv = servers[k, s]
				for (m = 4; m <= 7; m++) med[s, m] = median(vals[k, sv, m])
				printf "| %s | %s | %d | %s | %s | %s | %s |\n", s == 1 ? k : "", sv, runs[k, sv], fmt(med[s, 4], 0), fmt(med[s, 5], 1), fmt(med[s, 6], 1), fmt(med[s, 7], 2)
			}
			for (s = 2; s <= nservers[k]; s++)
				printf "| | **%s / %s** | | **%s** | %s | %s | %s |\n", servers[k, 1], servers[k, s], ratio(med[1, 4], med[s, 4]), ratio(med[1, 5], med[s, 5]), ratio(med[1, 6], med[s, 6]), ratio(med[1, 7], med[s, 7])
		}
	}' "$WORK/runs.tsv"
}

# rss_table NAME PID ...: peak RSS (VmHWM) of each server now, and the first
# over each other.
rss_table() {
	local first="" name pid kb
	echo "| server | peak RSS (VmHWM) over this whole workload | ratio |"
	echo "|---|---|---|"
	while [[ $# -gt 0 ]]; do
		name=$1 pid=$2
		shift 2
		kb=$(status_kb "$pid" VmHWM)
		if [[ -z $first ]]; then
			first=$kb
			echo "| $name | $(mib "$kb") MiB | |"
		else
			echo "| $name | $(mib "$kb") MiB | $(awk -v a="$first" -v b="$kb" 'BEGIN { printf "%.2f", a / b }') |"
		fi
	done
}

machine() {
	echo "- machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
		"$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r);" \
		"load average at the start $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: compare ratios, not absolute numbers)"
	echo "- caddy-tagcache $TREE," \
		"$("$WORK/bin/caddy" version | cut -d' ' -f1), $(go version | cut -d' ' -f3)"
	echo "- $(memcached -V), $(varnishd -V 2>&1 | head -1 | cut -d' ' -f2 | tr -d '()'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), memcaslap from libmemcached-tools $(dpkg-query -W -f '${Version}' libmemcached-tools 2>/dev/null || echo '?'), $(redis-server --version | cut -d' ' -f1-3)"
}

# write_result NAME TITLE: the result file from the tables in $WORK/NAME.md.
write_result() {
	local file
	file="$RESULTS/$(date -u +%Y-%m-%d)-$1.md"
	mkdir -p "$RESULTS"
	{
		echo "# $2"
		echo
		echo "Command: \`$COMMAND\` ($(date -u '+%Y-%m-%d %H:%M UTC'))"
		echo
		machine
		echo
		cat "$WORK/$1.md"
		if [[ -s $WORK/runs.tsv ]]; then
			echo
			echo "Every run (case, server, round, ops/s, p50 µs, p99 µs, CPU s per 1M ops):"
			echo
			echo '```'
			cat "$WORK/runs.tsv"
			echo '```'
		fi
	} >"$file"
	cat "$WORK/$1.md"
	log "written to ${file#"$REPO"/}"
	rm -f "$WORK/runs.tsv" "$WORK/raw.txt"
}

tagcache_listen_config() {
	printf '{\n\tadmin off\n\tpersist_config off\n\ttagcache {\n\t\tstore {\n\t\t\tmax_memory 1GiB\n\t\t}\n\t\tlisten %s 127.0.0.1:%s\n\t}\n}\n' "$1" "$2"
}

workload_memcached() {
	log "memcached protocol: tagcache vs memcached, $ROUNDS rounds of ${DURATION}s per case"
	start_caddy tagcache "$PORT_TC_MEMCACHED" "$(tagcache_listen_config memcached "$PORT_TC_MEMCACHED")"
	start_memcached
	local value pipeline round case
	for value in 32 1024; do
		for pipeline in 1 16; do
			case="$value B, pipeline $pipeline"
			for round in $(seq "$ROUNDS"); do
				log "$case, round $round"
				tcbench "$case" tagcache "$round" "$tagcache_PID" "127.0.0.1:$PORT_TC_MEMCACHED" -proto memcached -conns 50 -keys 10000 -value "$value" -ratio 1:10 -pipeline "$pipeline"
				tcbench "$case" memcached "$round" "$memcached_PID" "127.0.0.1:$PORT_MEMCACHED" -proto memcached -conns 50 -keys 10000 -value "$value" -ratio 1:10 -pipeline "$pipeline"
			done
		done
	done
	for value in 32 1024; do
		for round in $(seq "$ROUNDS"); do
			log "memcaslap, $value B, round $round"
			memcaslap_run "memcaslap $value B" tagcache "$round" "$tagcache_PID" "127.0.0.1:$PORT_TC_MEMCACHED" "$value"
			memcaslap_run "memcaslap $value B" memcached "$round" "$memcached_PID" "127.0.0.1:$PORT_MEMCACHED" "$value"
		done
	done
	rss_table tagcache "$tagcache_PID" memcached "$memcached_PID" >"$WORK/memcached-rss.md"
	stop_servers
	# The same load with the servers on one CPU and the load generator on
	# another, as when they run on separate machines: what the servers do
	# with a CPU, without the scheduler's sharing of both CPUs among all.
	local split=""
	if [[ $(nproc) -ge 2 ]]; then
		split="; servers on CPU 1, tagcache-bench on CPU 0"
		SERVER_CPUS=1 CLIENT_CPUS=0
		start_caddy tagcache "$PORT_TC_MEMCACHED" "$(tagcache_listen_config memcached "$PORT_TC_MEMCACHED")"
		start_memcached
		for value in 32 1024; do
			case="$value B, pipeline 1$split"
			for round in $(seq "$ROUNDS"); do
				log "$case, round $round"
				tcbench "$case" tagcache "$round" "$tagcache_PID" "127.0.0.1:$PORT_TC_MEMCACHED" -proto memcached -conns 50 -keys 10000 -value "$value" -ratio 1:10 -pipeline 1
				tcbench "$case" memcached "$round" "$memcached_PID" "127.0.0.1:$PORT_MEMCACHED" -proto memcached -conns 50 -keys 10000 -value "$value" -ratio 1:10 -pipeline 1
			done
		done
		stop_servers
		SERVER_CPUS="" CLIENT_CPUS=""
	fi
	{
		echo "Both servers: 1 GiB memory budget (tagcache \`max_memory 1GiB\` with \`listen memcached\`, Caddy with GOMAXPROCS unset;"
		echo "\`memcached -t 2 -m 1024 -c 4096\`). Load: \`tagcache-bench -proto memcached -conns 50 -keys 10000 -ratio 1:10 -duration ${DURATION}s\`"
		echo "with the value size and pipeline of each case, the keys set once before each run; servers alternated, $ROUNDS rounds, medians."
		echo "memcaslap: \`memcaslap -T 2 -c 50 -t ${DURATION}s\` with 16-byte keys and a 1:10 set:get config, alternated the same way (it reports throughput only)."
		[[ -z $split ]] || echo "The cases marked \"$split\" start both servers afresh under \`taskset -c 1\` (so Caddy runs with GOMAXPROCS 1) and the load under \`taskset -c 0\`; the peak RSS is of the servers of the other cases."
		echo "Ratios are tagcache / memcached: above 1 is better for ops/s, below 1 is better for the others."
		echo
		table
		echo
		cat "$WORK/memcached-rss.md"
	} >"$WORK/memcached.md"
	write_result memcached "tagcache vs memcached 1.6 over the memcached protocol"
}

workload_redis() {
	log "Redis protocol: tagcache vs redis-server, $ROUNDS rounds per case"
	start_caddy tagcache "$PORT_TC_RESP" "$(tagcache_listen_config resp "$PORT_TC_RESP")"
	start redis "$PORT_REDIS" redis-server --bind 127.0.0.1 --port "$PORT_REDIS" --save '' --appendonly no --maxmemory 1gb
	local test pipeline round n
	for pipeline in 1 16; do
		# About DURATION seconds per run at the rates of this machine.
		n=$((DURATION * (pipeline == 1 ? 20000 : 100000)))
		for test in set get incr mset; do
			for round in $(seq "$ROUNDS"); do
				log "$test, pipeline $pipeline, round $round"
				redisbench "${test^^}, pipeline $pipeline" tagcache "$round" "$tagcache_PID" "$PORT_TC_RESP" "$test" "$pipeline" "$n"
				redisbench "${test^^}, pipeline $pipeline" redis "$round" "$redis_PID" "$PORT_REDIS" "$test" "$pipeline" "$n"
			done
		done
	done
	{
		echo "tagcache with \`max_memory 1GiB\` and \`listen resp\` (Caddy with GOMAXPROCS unset); \`redis-server --save '' --appendonly no --maxmemory 1gb\`."
		echo "Load: \`redis-benchmark -t <test> -c 50 -r 10000 -P <pipeline> -n <requests> --csv\` ($((DURATION * 20000)) requests at pipeline 1,"
		echo "$((DURATION * 100000)) at pipeline 16; MSET sets 10 keys per request); servers alternated, $ROUNDS rounds, medians."
		echo "Ratios are tagcache / redis: above 1 is better for ops/s, below 1 is better for the others."
		echo
		table
		echo
		rss_table tagcache "$tagcache_PID" redis "$redis_PID"
	} >"$WORK/redis.md"
	stop_servers
	write_result redis "tagcache vs redis-server 7 over the Redis protocol"
}

workload_http() {
	log "HTTP hits: tagcache vs Caddy respond vs Varnish, $ROUNDS rounds of ${DURATION}s per case"
	local kb body1k body64k
	body1k=$(head -c 1024 /dev/zero | tr '\0' 'a')
	body64k=$(head -c 65536 /dev/zero | tr '\0' 'b')
	start_caddy origin "$PORT_ORIGIN" "$(printf '{\n\tadmin off\n\tpersist_config off\n}\n:%s {\n\tbind 127.0.0.1\n\theader Cache-Control "public, max-age=3600"\n\trespond /1k "%s" 200\n\trespond /64k "%s" 200\n}\n' "$PORT_ORIGIN" "$body1k" "$body64k")"
	local servers=() have_tagcache=""
	if "$WORK/bin/caddy" list-modules 2>/dev/null | grep -qx http.handlers.tagcache; then
		have_tagcache=1
		start_caddy tagcache "$PORT_TC_HTTP" "$(printf '{\n\tadmin off\n\tpersist_config off\n\ttagcache {\n\t\tstore {\n\t\t\tmax_memory 256MiB\n\t\t}\n\t}\n}\n:%s {\n\tbind 127.0.0.1\n\ttagcache\n\treverse_proxy 127.0.0.1:%s\n}\n' "$PORT_TC_HTTP" "$PORT_ORIGIN")"
		servers+=("tagcache hit:$PORT_TC_HTTP")
	else
		log "this Caddy has no http.handlers.tagcache: measuring the peers only"
	fi
	servers+=("caddy respond:$PORT_ORIGIN" "varnish hit:$PORT_VARNISH")
	mkdir -p "$WORK/varnish"
	printf 'vcl 4.1;\nbackend origin { .host = "127.0.0.1"; .port = "%s"; }\nsub vcl_deliver {\n\tif (obj.hits > 0) {\n\t\tset resp.http.X-Cache = "HIT";\n\t} else {\n\t\tset resp.http.X-Cache = "MISS";\n\t}\n}\n' "$PORT_ORIGIN" >"$WORK/varnish.vcl"
	start varnish "$PORT_VARNISH" varnishd -F -j none -n "$WORK/varnish" -a "127.0.0.1:$PORT_VARNISH" -T "127.0.0.1:$PORT_VARNISH_CLI" -f "$WORK/varnish.vcl" -s malloc,256m

	# Warm both caches and check that they answer hits with the origin's bytes.
	local path headers
	for path in 1k 64k; do
		kb=$(curl -s "http://127.0.0.1:$PORT_ORIGIN/$path" | wc -c)
		[[ $kb -eq $([[ $path == 1k ]] && echo 1024 || echo 65536) ]] || die "origin /$path sent $kb bytes"
		if [[ -n $have_tagcache ]]; then
			curl -s -o /dev/null "http://127.0.0.1:$PORT_TC_HTTP/$path"
			headers=$(curl -s -D - -o "$WORK/body" "http://127.0.0.1:$PORT_TC_HTTP/$path")
			grep -qi '^cache-status:.*; hit' <<<"$headers" || die "tagcache /$path is not a hit: $headers"
			cmp -s "$WORK/body" <(curl -s "http://127.0.0.1:$PORT_ORIGIN/$path") || die "tagcache /$path differs from the origin"
		fi
		curl -s -o /dev/null "http://127.0.0.1:$PORT_VARNISH/$path"
		headers=$(curl -s -D - -o "$WORK/body" "http://127.0.0.1:$PORT_VARNISH/$path")
		grep -qi '^x-cache: HIT' <<<"$headers" || die "varnish /$path is not a hit: $headers"
		cmp -s "$WORK/body" <(curl -s "http://127.0.0.1:$PORT_ORIGIN/$path") || die "varnish /$path differs from the origin"
	done

	local round case server name port pid
	for path in 1k 64k; do
		case="$([[ $path == 1k ]] && echo 1 || echo 64) KiB body"
		for round in $(seq "$ROUNDS"); do
			log "$case, round $round"
			for server in "${servers[@]}"; do
				name=${server%:*} port=${server##*:}
				case $port in
				"$PORT_TC_HTTP") pid=$tagcache_PID ;;
				"$PORT_ORIGIN") pid=$origin_PID ;;
				*) pid=$varnish_PID ;;
				esac
				wrkrun "$case" "$name" "$round" "$pid" "http://127.0.0.1:$port/$path"
			done
		done
	done
	{
		echo "Three servers on loopback: Caddy with the \`tagcache\` directive (store \`max_memory 256MiB\`) in front of"
		echo "\`reverse_proxy\` to a plain Caddy that answers with \`respond\` (and \`Cache-Control: public, max-age=3600\`);"
		echo "that plain Caddy itself (\`caddy respond\`); and Varnish (\`varnishd -s malloc,256m\`, default VCL plus an \`X-Cache\` header)"
		echo "in front of the same plain Caddy. Both caches were warmed and checked to answer hits (\`Cache-Status: ...; hit\`, \`X-Cache: HIT\`)"
		echo "with the origin's bytes. Load: \`wrk -t1 -c50 -d${DURATION}s --latency\` on one URL; servers alternated, $ROUNDS rounds, medians."
		echo "Caddy's GOMAXPROCS is unset. CPU counts the server processes only (Varnish's manager and worker), not the origin."
		[[ -n $have_tagcache ]] || echo "**The Caddy built here has no \`tagcache\` HTTP handler yet, so only the peers were measured.**"
		echo "Ratios are the first row over each other row: above 1 is better for req/s, below 1 is better for the others."
		echo
		table | sed 's/| ops\/s |/| req\/s |/; s/CPU s per 1M ops/CPU s per 1M requests/'
		echo
		local args=()
		[[ -n $have_tagcache ]] && args+=(tagcache "$tagcache_PID")
		rss_table "${args[@]}" "caddy respond" "$origin_PID" varnish "$varnish_PID"
	} >"$WORK/http.md"
	stop_servers
	write_result http "HTTP cache hits: tagcache vs Caddy respond vs Varnish 7.1"
}

workload_tags() {
	log "tag purge under load: 1M keys, $ROUNDS rounds"
	start_caddy tagcache "$PORT_TC_TAB" "$(tagcache_listen_config tcp "$PORT_TC_TAB")"
	local out
	out=$("$WORK/bin/tagload" purge -addr "127.0.0.1:$PORT_TC_TAB" -keys 1000000 -value 32 -tags 1000 -hot-every 10 \
		-conns 50 -rounds "$ROUNDS" -before 3s -after 2s) || die "tagload purge failed: $out"
	echo "$out" >&2
	{
		echo "tagcache alone (no peer has tags): \`listen tcp\` with \`max_memory 1GiB\`. 1,000,000 keys (16 bytes, 32-byte values),"
		echo "key i tagged \`t<i mod 1000>\` (1,000 keys per tag), every 10th key also tagged \`hot\` (100,000 keys),"
		echo "loaded with pipelined \`PUT\`s. Each round: 50 connections send \`GET\`s of random keys one at a time for 5 s;"
		echo "after 3 s one more connection sends \`INV_TAG hot\`. The purge time is measured by that client around the command;"
		echo "\"before\" are the gets answered in the 0.6-3 s before it, \"during\" the gets in flight at any moment of the purge."
		echo "The hot keys are set again between rounds. Command: \`tagload purge -keys 1000000 -value 32 -tags 1000 -hot-every 10 -conns 50 -rounds $ROUNDS -before 3s -after 2s\`."
		echo
		awk '/^filled=/ { split($0, f, /[ =]/); printf "Load: %d keys with tags in %.2f s (%d keys/s).\n\n", f[2], f[4], f[6] }' <<<"$out"
		echo "| round | purge ms | keys removed | gets/s | GET p50 before µs | GET p99 before µs | gets during | GET p50 during µs | GET p99 during µs | GET max during µs |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		awk "$AWK_MEDIAN"'/^round=/ {
			for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", v["round"], v["purge_ms"], v["invalidated"], v["gets_per_s"],
				v["base_p50_us"], v["base_p99_us"], v["during_n"], v["during_p50_us"], v["during_p99_us"], v["during_max_us"]
			for (i = 1; i <= NF; i++) { split($i, kv, "="); all[kv[1]] = all[kv[1]] " " kv[2] }
			n++
		}
		END {
			printf "| **median** | **%s** | | %s | %s | **%s** | | %s | **%s** | %s |\n", median(all["purge_ms"]), median(all["gets_per_s"]),
				median(all["base_p50_us"]), median(all["base_p99_us"]), median(all["during_p50_us"]), median(all["during_p99_us"]), median(all["during_max_us"])
		}' <<<"$out"
		echo
		echo "Peak RSS (VmHWM) of Caddy: $(mib "$(status_kb "$tagcache_PID" VmHWM)") MiB."
	} >"$WORK/tags.md"
	stop_servers
	write_result tags "Tag purge under read load (tagcache only)"
}

workload_memory() {
	log "memory: 1M items of 16-byte keys and 100-byte values, $ROUNDS rounds"
	local round server pid port idle loaded peak out
	for round in $(seq "$ROUNDS"); do
		for server in tagcache memcached; do
			if [[ $server == tagcache ]]; then
				start_caddy tagcache "$PORT_TC_MEMCACHED" "$(tagcache_listen_config memcached "$PORT_TC_MEMCACHED")"
				pid=$tagcache_PID port=$PORT_TC_MEMCACHED
			else
				start_memcached
				pid=$memcached_PID port=$PORT_MEMCACHED
			fi
			sleep 1
			idle=$(status_kb "$pid" VmRSS)
			out=$("$WORK/bin/tagload" fill -proto memcached -addr "127.0.0.1:$port" -keys 1000000 -value 100) || die "fill of $server failed: $out"
			sleep 2
			loaded=$(status_kb "$pid" VmRSS) peak=$(status_kb "$pid" VmHWM)
			log "$server round $round: idle $idle KiB, loaded $loaded KiB, peak $peak KiB; $out"
			printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$round" "$idle" "$loaded" "$peak" >>"$WORK/memory.tsv"
			stop_servers
		done
	done
	{
		echo "Each round starts each server afresh (tagcache: \`listen memcached\`, \`max_memory 1GiB\`, GOMAXPROCS unset;"
		echo "\`memcached -t 2 -m 1024\`), reads VmRSS at idle, sets 1,000,000 items of 16-byte keys and 100-byte values"
		echo "(\`tagload fill -proto memcached -keys 1000000 -value 100\`, pipelined \`set\`s over 8 connections, every reply checked),"
		echo "waits 2 s and reads VmRSS and VmHWM again. Per item = (loaded - idle) / 1,000,000. Servers alternated, $ROUNDS rounds, medians."
		echo "Ratio: tagcache / memcached, below 1 is better. Go's RSS includes garbage not yet collected (GOGC=100)."
		echo
		echo "| server | idle RSS MiB | loaded RSS MiB | peak RSS MiB | RSS per item, bytes | peak per item, bytes |"
		echo "|---|---|---|---|---|---|"
		awk -F'\t' "$AWK_MEDIAN"'
		{
			if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
			idle[$1] = idle[$1] " " $3; loaded[$1] = loaded[$1] " " $4; peak[$1] = peak[$1] " " $5
			per[$1] = per[$1] " " ($4 - $3) * 1024 / 1e6; peakper[$1] = peakper[$1] " " ($5 - $3) * 1024 / 1e6
		}
		END {
			for (i = 1; i <= n; i++) {
				s = order[i]
				p[i] = median(per[s]); pp[i] = median(peakper[s])
				printf "| %s | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s, median(idle[s]) / 1024, median(loaded[s]) / 1024, median(peak[s]) / 1024, p[i], pp[i]
			}
			printf "| **%s / %s** | | | | **%.2f** | %.2f |\n", order[1], order[2], p[1] / p[2], pp[1] / pp[2]
		}' "$WORK/memory.tsv"
		echo
		echo "Every run (server, round, idle, loaded and peak RSS in KiB):"
		echo
		echo '```'
		cat "$WORK/memory.tsv"
		echo '```'
	} >"$WORK/memory.md"
	write_result memory "Memory: 1M items, tagcache vs memcached 1.6"
}

install_peers
build
log "work directory $WORK; results to $RESULTS"
case $WORKLOAD in
all)
	workload_memcached
	workload_http
	workload_tags
	workload_memory
	workload_redis
	;;
*) "workload_$WORKLOAD" ;;
esac

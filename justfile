# wacheck recipes. `just --list` shows them all.

export DATABASE_URL := env_var_or_default("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/wacheck")
export REDIS_URL := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")
export WACHECK_TEST_DATABASE_URL := env_var_or_default("WACHECK_TEST_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432")
export PATH := env_var("HOME") + "/.cargo/bin:" + env_var("PATH")

default:
    @just --list

# Install what running needs (just, curl, jq), and start Postgres and Redis.
deps:
    scripts/bootstrap

# Install what the tests need besides (nextest, the S3 test server, wrk, schemathesis,
# cargo-fuzz).
test-deps:
    scripts/bootstrap --test

# Start Postgres and Redis (installing them when missing).
services:
    scripts/services

# Run the service (API and worker) with a demo user and key, printing how to try it. Builds the
# development profile (dependencies optimised; the build the tests share) and links it as
# bin/wacheck.
run: deps
    cargo build --bin wacheck
    mkdir -p bin && ln -sf "$(realpath "${CARGO_TARGET_DIR:-target}")/debug/wacheck" bin/wacheck
    scripts/demo bin/wacheck

# The same with the release build (about 20 minutes from cold on 2 cores): for production.
run-release: deps
    cargo build --release --bin wacheck
    mkdir -p bin && ln -sf "$(realpath "${CARGO_TARGET_DIR:-target}")/release/wacheck" bin/wacheck
    scripts/demo bin/wacheck

# The whole test suite against real Postgres, Redis and S3 (s3s-fs), then the fault tests, the
# README's quick start followed word for word, schemathesis, fuzzing and the benchmark smoke run.
test: test-deps
    scripts/drop-test-databases
    cargo nextest run --workspace --no-fail-fast --test-threads 4 -E 'not test(/^chaos::/)'
    just chaos
    just quickstart
    just schemathesis
    just fuzz 15
    just bench-smoke

# Fault tests, one at a time: workers killed, Redis and Postgres restarted, storage down,
# backend faults, SIGTERM (private Redis and Postgres servers; only 127.0.0.1).
chaos: test-deps
    cargo nextest run -p wacheck --test it --no-fail-fast --test-threads 1 -E 'test(/^chaos::/)'

# README's quick start, word for word: `just run` in the background, then the commands of its
# "Try it" section, and the downloaded result file checked.
quickstart: test-deps
    scripts/quickstart

# schemathesis against /openapi.json of a running service (debug build): no 5xx, and every
# answer matches the document.
schemathesis: test-deps
    cargo build --bin wacheck
    scripts/schemathesis "${CARGO_TARGET_DIR:-target}/debug/wacheck" 25

# Every fuzz target for SECONDS each (number normalisation, the txt, csv and xlsx readers).
fuzz SECONDS="60": test-deps
    scripts/fuzz {{SECONDS}}

# Load run (release build): one API and two worker processes, 50 concurrent uploads of 10,000
# numbers under 500 status polls per second (wrk) for 60 s. Figures go to docs/benchmarks.md.
load: test-deps
    cargo test --release -p wacheck --test it load:: -- --ignored --nocapture --test-threads 1

# The benchmark suite (release build): reading, normalisation, storing, export, upload, end to
# end with 1 and 2 workers, worker CPU per number, memory at 100k/1M/2M, status polling under
# wrk. Medians of 3 runs; the table goes into docs/benchmarks.md. About 15 minutes.
bench: test-deps
    cargo build --release --bins
    "${CARGO_TARGET_DIR:-target}/release/wacheck-bench" run --runs 3 --out docs/benchmarks.md

# The same suite with REV's build (default: the commit before HEAD) beside this tree's: their
# 1M-number end to end runs alternate, and docs/benchmarks.md shows both side by side.
bench-against REV="HEAD~1": test-deps
    scripts/bench-against {{REV}}

# The suite at 1/100 of its sizes, one run, into a scratch file: proves `just bench` still works.
bench-smoke: test-deps
    cargo build --bins
    "${CARGO_TARGET_DIR:-target}/debug/wacheck-bench" run --quick --out "${CARGO_TARGET_DIR:-target}/bench-smoke.md"

# Formatting, lints and no import cycles between the modules of a crate, as CI runs them.
lint:
    cargo fmt --all -- --check
    scripts/check-module-cycles
    cargo clippy --workspace --all-targets -- -D warnings

# Apply database migrations.
migrate:
    cargo run --release --bin wacheck -- migrate

# wacheck recipes. `just --list` shows them all.

export DATABASE_URL := env_var_or_default("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/wacheck")
export REDIS_URL := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")
export WACHECK_TEST_DATABASE_URL := env_var_or_default("WACHECK_TEST_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432")
export PATH := env_var("HOME") + "/.cargo/bin:" + env_var("PATH")

default:
    @just --list

# Install what builds and tests need, and start Postgres and Redis.
deps:
    scripts/bootstrap

# Start Postgres and Redis (installing them when missing).
services:
    scripts/services

# Run the service (API and worker) with a demo key, printing a curl line to try it.
run: deps
    cargo build --release --bin wacheck
    scripts/demo

# The whole test suite against real Postgres, Redis and S3 (s3s-fs), then the fault tests.
test: deps
    scripts/drop-test-databases
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run --workspace --no-fail-fast --test-threads 4 -E 'not binary(chaos)'; \
    else \
        cargo test --workspace --no-fail-fast --lib --bins --test pipeline --test errors \
            --test blob --test lifecycle --test upgrade --test gateways --test accounts --test budget \
            --test security --test sync \
            -- --test-threads 4; \
    fi
    just chaos
    just schemathesis
    just fuzz 15
    just bench-smoke

# Fault tests, one at a time: workers killed, Redis and Postgres restarted, storage down,
# backend faults, SIGTERM (private Redis and Postgres servers; only 127.0.0.1).
chaos: deps
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run -p wacheck --test chaos --no-fail-fast --test-threads 1; \
    else \
        cargo test -p wacheck --test chaos --no-fail-fast -- --test-threads 1; \
    fi

# schemathesis against /openapi.json of a running service (debug build): no 5xx, and every
# answer matches the document.
schemathesis: deps
    cargo build --bin wacheck
    scripts/schemathesis "${CARGO_TARGET_DIR:-target}/debug/wacheck" 25

# Every fuzz target for SECONDS each (number normalisation, the txt, csv and xlsx readers).
fuzz SECONDS="60": deps
    scripts/fuzz {{SECONDS}}

# Load run (release build): one API and two worker processes, 50 concurrent uploads of 10,000
# numbers under 500 status polls per second (wrk) for 60 s. Figures go to docs/benchmarks.md.
load: deps
    cargo test --release -p wacheck --test load -- --ignored --nocapture --test-threads 1

# The benchmark suite (release build): reading, normalisation, storing, export, upload, end to
# end with 1 and 2 workers, worker CPU per number, memory at 100k/1M/2M, status polling under
# wrk. Medians of 3 runs; the table goes into docs/benchmarks.md. About 15 minutes.
bench: deps
    cargo build --release --bins
    "${CARGO_TARGET_DIR:-target}/release/wacheck-bench" run --runs 3 --out docs/benchmarks.md

# The suite at 1/100 of its sizes, one run, into a scratch file: proves `just bench` still works.
bench-smoke: deps
    cargo build --bins
    "${CARGO_TARGET_DIR:-target}/debug/wacheck-bench" run --quick --out "${CARGO_TARGET_DIR:-target}/bench-smoke.md"

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply database migrations.
migrate:
    cargo run --release --bin wacheck -- migrate

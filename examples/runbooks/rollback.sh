#!/bin/sh
# Rolls a model back by one version: writes the previous version into
# $MODEL_VERSION_DIR/<model>/current. Arguments: <model> <version being rolled back>.
# tocsin starts it without a shell, with a fixed minimal environment plus the variables the
# runbook declares.
set -eu
model=$1
bad=$2
dir=${MODEL_VERSION_DIR:?MODEL_VERSION_DIR is not set}/$model
number=${bad#v}
if [ "$number" -le 1 ]; then
    echo "no version before $bad to roll back to" >&2
    exit 2
fi
previous="v$((number - 1))"
mkdir -p "$dir"
printf '%s\n' "$previous" > "$dir/current.tmp"
mv "$dir/current.tmp" "$dir/current"
echo "rolled $model back from $bad to $previous"

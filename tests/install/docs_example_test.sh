#!/usr/bin/env bash
# docs_example_test.sh DOC FILE: the first ```cpp block of DOC that follows the line
# "<!-- example: NAME -->" (NAME = FILE's base name) is FILE, byte for byte. So a page that shows
# a compiled and tested example cannot drift from it.
set -euo pipefail
doc=$1
file=$2
name=$(basename "$file")
block=$(awk -v marker="<!-- example: $name -->" '
  $0 == marker { found = 1; next }
  found && !inside && /^```cpp$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }
' "$doc")
[ -n "$block" ] || { echo "docs_example_test: $doc has no \`\`\`cpp block after <!-- example: $name -->" >&2; exit 1; }
if ! diff -u "$file" <(printf '%s\n' "$block") >&2; then
  echo "docs_example_test: $doc shows another $name than $file (diff above: - file, + doc)" >&2
  exit 1
fi
echo "docs_example_test: $doc shows $name as it is"

#!/bin/sh
# Re-copy the Socket.IO browser client from node_modules into public/vendor/.
# The demo is served as static files with no bundler and must load nothing from the internet,
# so the client library is vendored. Run `npm install` first (in web/).
set -eu
cd "$(dirname "$0")/.."
src=node_modules/socket.io-client/dist/socket.io.min.js
if [ ! -f "$src" ]; then
  echo "missing $src: run 'npm install' in web/ first" >&2
  exit 1
fi
version=$(node -p "require('./node_modules/socket.io-client/package.json').version")
mkdir -p public/vendor
cp "$src" public/vendor/socket.io.min.js
cat > public/vendor/README.md <<EOT
# Vendored browser libraries

- \`socket.io.min.js\`: socket.io-client ${version} (npm), copied verbatim from
  \`node_modules/socket.io-client/dist/socket.io.min.js\` by \`web/scripts/vendor.sh\`
  (run \`npm install && sh scripts/vendor.sh\` in \`web/\` to refresh it).
EOT
echo "vendored socket.io-client ${version}"

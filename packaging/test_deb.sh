#!/bin/sh
# Builds the .deb with CPack, checks its metadata and contents, unpacks it into a scratch root and
# runs the unpacked CLI from there: --version, and a demo generation that must find the demo model
# under <root>/usr/share/kto-studio/models/kto-demo (find_demo_model: <exe>/../share/...).
# Usage: test_deb.sh BUILD_DIR   (the build must be complete: cpack installs both executables)
set -eu
build=$(cd "$1" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kto-deb-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cd "$build"
cpack -G DEB -B "$scratch/out" >"$scratch/cpack.log" 2>&1 || { cat "$scratch/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$(ls "$scratch"/out/*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || fail "cpack wrote no .deb into $scratch/out"
echo "package: $(basename "$deb") ($(du -h "$deb" | cut -f1))"

info=$(dpkg-deb --info "$deb")
echo "$info" | grep -q '^ Package: kto-studio$' || fail "control: Package is not kto-studio"
depends=$(echo "$info" | sed -n 's/^ Depends: //p')
[ -n "$depends" ] || fail "control: no Depends field"
for dep in libtorch1.13 libqt6widgets6 libqt6charts6 libsqlite3-0; do
    echo "$depends" | grep -q "$dep" || fail "control: Depends lacks $dep ($depends)"
done
echo "Depends: $depends"

contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/kto-studio ./usr/bin/kto-studio-cli \
            ./usr/share/kto-studio/models/kto-demo/model_index.json \
            ./usr/share/kto-studio/models/kto-demo/unet/diffusion_pytorch_model.safetensors \
            ./usr/share/kto-studio/models/kto-demo/vae/diffusion_pytorch_model.safetensors \
            ./usr/share/kto-studio/models/kto-demo/text_encoder/model.safetensors \
            ./usr/share/kto-studio/models/kto-demo/tokenizer/vocab.json \
            ./usr/share/applications/kto-studio.desktop \
            ./usr/share/icons/hicolor/scalable/apps/io.github.kto_studio.KtoStudio.svg \
            ./usr/share/metainfo/io.github.kto_studio.KtoStudio.metainfo.xml; do
    echo "$contents" | awk '{print $NF}' | grep -qx "$path" || fail "package lacks $path"
done
echo "$contents" | grep -q '^-rwxr-xr-x .* ./usr/bin/kto-studio-cli$' || fail "kto-studio-cli is not executable"

root="$scratch/root"
dpkg-deb -x "$deb" "$root"
cli="$root/usr/bin/kto-studio-cli"
version=$(env -u KTO_DEMO_MODEL "$cli" --version)
pkgver=$(echo "$info" | sed -n 's/^ Version: //p')
[ "$version" = "kto-studio-cli $pkgver" ] || fail "--version printed '$version' (package version $pkgver)"
echo "$version"

# Demo generation from the installed paths: no --model, no KTO_DEMO_MODEL.
env -u KTO_DEMO_MODEL OPENBLAS_NUM_THREADS=1 "$cli" generate --prompt "a large red circle on a blue background" \
    --seed 7 --steps 4 --out "$scratch/demo.png" --workspace "$scratch/ws" >"$scratch/gen.log" 2>&1 \
    || { cat "$scratch/gen.log" >&2; fail "demo generation from the installed CLI failed"; }
[ -s "$scratch/demo.png" ] || fail "no image written"
head -c 8 "$scratch/demo.png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' || fail "demo.png is not a PNG"
folder=$(sqlite3 "$scratch/ws/studio.sqlite3" "SELECT folder FROM models")
case "$folder" in
    "$root"/usr/share/kto-studio/models/kto-demo) ;;
    *) fail "the generation used the model at '$folder', not the installed one" ;;
esac
echo "demo generation used $folder"
echo "PASS"

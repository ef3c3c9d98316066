#!/bin/sh
# An AppImage from the PyInstaller bundle.
#   python packaging/build.py                   (makes build/dist/comfy-fleet/)
#   sh packaging/linux/build-appimage.sh        (makes build/ComfyFleet.AppDir, then the
#                                                AppImage if appimagetool is on PATH)
# appimagetool: https://github.com/AppImage/appimagetool/releases (not bundled here).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUNDLE="$ROOT/build/dist/comfy-fleet"
APPDIR="$ROOT/build/ComfyFleet.AppDir"
[ -x "$BUNDLE/comfy-fleet" ] || { echo "build the bundle first: python packaging/build.py" >&2; exit 1; }

rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/share/applications"
cp -a "$BUNDLE" "$APPDIR/usr/lib/comfy-fleet"
cp "$ROOT/packaging/linux/comfy-fleet.desktop" "$APPDIR/usr/share/applications/"
cp "$ROOT/packaging/linux/comfy-fleet.desktop" "$APPDIR/comfy-fleet.desktop"
for size in 16 24 32 48 64 128 256 512; do
    target="$APPDIR/usr/share/icons/hicolor/${size}x${size}/apps"
    mkdir -p "$target"
    cp "$ROOT/resources/icons/hicolor/${size}x${size}/apps/comfy-fleet.png" "$target/"
done
cp "$ROOT/resources/icons/hicolor/256x256/apps/comfy-fleet.png" "$APPDIR/comfy-fleet.png"
cat > "$APPDIR/AppRun" <<'RUN'
#!/bin/sh
HERE=$(dirname "$(readlink -f "$0")")
exec "$HERE/usr/lib/comfy-fleet/comfy-fleet" "$@"
RUN
chmod +x "$APPDIR/AppRun"
echo "AppDir ready: $APPDIR"

if command -v appimagetool >/dev/null 2>&1; then
    ARCH=$(uname -m) appimagetool "$APPDIR" "$ROOT/build/ComfyFleet-$(uname -m).AppImage"
else
    echo "appimagetool not found: the AppDir is ready, the AppImage was not made" >&2
fi

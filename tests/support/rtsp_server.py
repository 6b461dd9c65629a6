#!/usr/bin/python3
"""An RTSP server for the RTSP pull tests: GStreamer's gst-rtsp-server serving a live test
pattern as H.264 (x264, zero latency, no B-frames, a keyframe every 2 s) and AAC-LC
(48 kHz stereo sine), as an IP camera or a hardware encoder would.

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --mount /test \
        [--user NAME --password SECRET]

Run it with Debian's python3 (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-
{base,good,ugly,bad}, gstreamer1.0-libav: scripts/install-deps.sh). It prints
`ready rtsp://127.0.0.1:PORT/MOUNT` once it listens, and serves RTP over TCP (interleaved)
and UDP. Every client gets its own pipeline, so a client that reconnects starts on a
keyframe, and the listening socket allows address reuse, so the server can be killed and
started again on the same port at once (the reconnect tests do that).
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ROLE = "puller"


def aac_encoder() -> str:
    """libav's AAC encoder when present, else vo-aacenc (plugins-bad)."""
    for name in ("avenc_aac", "voaacenc"):
        if Gst.ElementFactory.find(name) is not None:
            return name
    sys.exit("no AAC encoder: install gstreamer1.0-libav (avenc_aac)")


def launch_line(fps: int, keyframe_secs: int) -> str:
    # x264enc's zerolatency tune turns B-frames and lookahead off: decode order equals
    # presentation order, as from most cameras. key-int-max is in frames.
    video = (
        f"videotestsrc is-live=true pattern=smpte "
        f"! video/x-raw,width=640,height=360,framerate={fps}/1 ! videoconvert "
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate=800 "
        f"key-int-max={fps * keyframe_secs} "
        f"! rtph264pay name=pay0 pt=96 config-interval=-1"
    )
    audio = (
        "audiotestsrc is-live=true wave=sine freq=440 "
        "! audio/x-raw,rate=48000,channels=2 ! audioconvert ! audioresample "
        f"! {aac_encoder()} bitrate=96000 ! aacparse ! rtpmp4gpay name=pay1 pt=97"
    )
    return f"( {video} {audio} )"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/test")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--keyframe-secs", type=int, default=2)
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        sys.exit("--user and --password go together")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.fps, args.keyframe_secs))
    factory.set_shared(False)

    if args.user is not None:
        # Basic authentication (RFC 7826 §19.1.1): only this user may see the mount.
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{ROLE}, media.factory.access=(boolean)true, "
                "media.factory.construct=(boolean)true"
            )
        )

    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()

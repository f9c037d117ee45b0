"""Entry point: `<runtime python> -I -S <this directory>` with HANGAR_LAUNCH set boots a computer;
`... convert <upper dir> <image>` converts a disk of the old layout (see hangar_launcher)."""

import sys

sys.dont_write_bytecode = True

if sys.argv[1:2] == ["convert"] and len(sys.argv) == 4:
    from hangar_launcher.convert import main as convert  # noqa: E402

    convert(sys.argv[2], sys.argv[3])
else:
    from hangar_launcher.launch import main  # noqa: E402

    main()

from walrelay.cli import main

raise SystemExit(main())

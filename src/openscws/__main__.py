from openscws.cli import main

raise SystemExit(main())

from softmaxlab.cli import main

raise SystemExit(main())

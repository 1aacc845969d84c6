from s3exp.cli import main

raise SystemExit(main())

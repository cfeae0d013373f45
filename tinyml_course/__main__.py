from tinyml_course.cli import main

raise SystemExit(main())

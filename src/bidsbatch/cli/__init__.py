"""The ``bidsbatch`` command line: thin, it parses, calls the API and renders.

``entry.py`` is the console script's entry point (``--version`` without
loading typer); ``app.py`` holds the typer app, the one registration list,
the one place errors become exit codes; ``options.py`` every option shared by several
commands (declared once); ``params.py`` how a group of options is shared;
``render.py`` what several commands show; one module per command family
(``plan``, ``run``, ``worker``, ``image``, ``cost``, ``aws``).
"""

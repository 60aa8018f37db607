"""The ``bidsbatch`` command line: thin, it parses, calls the API and renders.

``entry.py`` is the console script's entry point (``--version`` without
loading typer); ``app.py`` holds the typer app, the one command table (the
order of ``--help``), the one place errors become exit codes; ``lazy.py``
imports a command's module only when that command runs; ``coercion.py`` keeps
typer 0.29's pydantic out of plain values; ``args.py`` the single shared
options, ``options.py`` the groups of them (declared once); ``params.py`` how
a group of options is shared; ``render.py`` and ``plain_table.py`` what several
commands show; one module per command family (``plan``, ``run``, ``status``,
``show``, ``runs``, ``worker``, ``image``, ``cost``, ``aws``).
"""

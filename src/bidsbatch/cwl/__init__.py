"""CWL pipelines (``kind = "cwl"``): a CommandLineTool run by cwltool per item.

``pipeline.py`` parses the pipeline file's ``[cwl]`` table; ``job.py`` fills the
job template (plan time: the item's values; run time: local paths);
``launch.py`` is the worker's side (files, the cwltool command line, the output
object); ``runner.py`` is the process that runs cwltool and keeps its output
object apart from its log.
"""

#!/usr/bin/env cwl-runner
# The md5sum of a file, after Dockstore's tutorial tool (dockstore-tool-md5sum).
cwlVersion: v1.2
class: CommandLineTool
doc: Writes the md5sum of input_file to md5sum.txt.
hints:
  # A hint, not a requirement: where the job is the image (AWS Batch), cwltool runs
  # with --no-container and md5sum comes from that image.
  DockerRequirement:
    dockerPull: docker.io/library/busybox:1.36
baseCommand: [md5sum]
inputs:
  input_file:
    type: File
    inputBinding: {position: 1}
outputs:
  output_file:
    type: stdout
stdout: md5sum.txt

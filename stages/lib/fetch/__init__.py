"""Fetching data safely, one module per concern:

- `checksums`: file digests (md5, sha256) and the check that a given one looks like a digest;
- `downloads`: resumable, retried, checksum-verified HTTP downloads (`download`);
- `archives`: zip and tar extraction that cannot write outside its folder (`extract`);
- `drive`: a public Google Drive folder, whole or not at all (`download_drive_folder`).

Every user-fixable problem is a one-line `PipelineError`.
"""

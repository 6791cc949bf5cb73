"""The knowledge base: postmortems rendered from their template (``render``), published as
Markdown files into a folder (``files``), committed and pushed when it is a Git repository
(``git``), and the postmortem's API-facing operations over the running service
(``postmortems``: show, save, versions, diff, publish). docs/postmortems.md."""

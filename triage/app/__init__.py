"""The Gradio web app: :mod:`.layout` (the Blocks and their wiring), :mod:`.handlers` (what each event does),
the client and therapist wording, and the education pages in ``content/``.

Light on purpose: importing a submodule such as :mod:`.wording` does not import gradio.
"""

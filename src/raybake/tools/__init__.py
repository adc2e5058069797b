"""One module per outside tool; nothing outside ``raybake.tools`` starts a process."""

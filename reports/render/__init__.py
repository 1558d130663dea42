"""report.html, and the parts the study and forecast pages borrow: gather the data first, render second.

`page` assembles report.html and the compare page from an `Analysis`; `headline` writes the strip of figures
above the verdict table; `charts` turns the run's frames into Plotly figures, one module per subject; `shared`
holds what every page needs (the Jinja environment over reports/templates, the inlined plotly.js, number
formats). Every verdict on a page was judged once, in `reports.judge`: these modules only format it.
"""

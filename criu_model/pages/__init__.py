"""Page storage: capture page contents of a frozen tree, store them once, read them back.

``capture`` finds and reads the pages a restore needs (PAGEMAP_SCAN, classic
pagemap entries, process_vm_readv or /proc/PID/mem), ``sink`` streams them
into pages.img, ``store`` reads them back lazily (checked against their
xxh3-64 hashes, parents resolved), ``memory`` answers by virtual address and
``search`` greps them. ``images/`` only frames pagemap.img like every image.
"""

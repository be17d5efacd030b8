"""The authors' release of Flickr-Mammal (Zenodo 10.5281/zenodo.3676081) as our shards, index and
manifest: :mod:`.layout` reads and checks the archive's layout, :mod:`.importer` writes the data.
"""

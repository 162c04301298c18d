"""The video catalogue: checking finished renders, thumbnails, sidecars and the recipe of each video."""

"""Objects in images: detection and segmentation annotations (COCO, YOLO, Pascal VOC, mask PNGs)
read by pixelscope.annotations.formats and checked against the images into one objects table by
pixelscope.annotations.objects."""

"""The widgets the screens are built of: tables, log views, the GPU panel, sparklines, the video grid."""

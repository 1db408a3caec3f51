/*{
    "DESCRIPTION": "Soft round vignette that darkens towards the corners (aspect aware). amount 0 leaves the picture unchanged; 1 takes the corners to black.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.4, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

void main() {
    vec4 src = IMG_THIS_PIXEL(inputImage);
    float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);
    vec2 p = (isf_FragNormCoord - 0.5) * vec2(aspect, 1.0);
    float d = length(p) / length(vec2(aspect, 1.0) * 0.5);   // 0 centre .. 1 corner
    float shade = smoothstep(0.25, 1.0, d);
    shade = shade * shade * (3.0 - 2.0 * shade);             // extra-soft shoulder
    gl_FragColor = vec4(src.rgb * (1.0 - amount * shade), 1.0);
}

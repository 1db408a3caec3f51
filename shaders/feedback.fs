/*{
    "DESCRIPTION": "MilkDrop-style feedback: the previous output, zoomed and rotated about the centre and faded, glows behind the new frame (lighten blend). Decay is normalised to 60 frames per second so renders and live shows look alike.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Feedback", "Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Trail strength", "TYPE": "float", "DEFAULT": 0.7, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "zoom", "LABEL": "Zoom (in > 0)", "TYPE": "float", "DEFAULT": 0.15, "MIN": -1.0, "MAX": 1.0},
        {"NAME": "rotate", "LABEL": "Rotate (ccw > 0)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -1.0, "MAX": 1.0}
    ],
    "PASSES": [
        {"TARGET": "trailBuffer", "PERSISTENT": true},
        {}
    ]
}*/

// Per 1/60 s at full scale: zoom 1.0 scales the trail by 4 %, rotate 1.0 turns it 0.04 rad.
const float ZOOM_RATE = 0.04;
const float ROTATE_RATE = 0.04;

void main() {
    if (PASSINDEX == 0) {
        // How many 60 fps frames this frame stands for (1 on the first frame).
        float k = TIMEDELTA > 0.0 ? clamp(TIMEDELTA * 60.0, 0.0, 4.0) : 1.0;
        float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);

        // Warp: where did this pixel's trail come from one frame ago?
        vec2 p = isf_FragNormCoord - 0.5;
        p.x *= aspect;
        float a = -rotate * ROTATE_RATE * k;
        p = mat2(cos(a), sin(a), -sin(a), cos(a)) * p;
        p /= exp(zoom * ZOOM_RATE * k);
        p.x /= aspect;
        vec2 src = p + 0.5;

        vec4 prev = IMG_NORM_PIXEL(trailBuffer, src);
        // Fade out softly where the warp pulls in from outside the frame.
        vec2 edge = smoothstep(vec2(0.0), vec2(0.01), src) * smoothstep(vec2(0.0), vec2(0.01), 1.0 - src);
        float decay = amount > 0.0 ? pow(amount, k) : 0.0;
        vec3 trail = prev.rgb * decay * edge.x * edge.y;

        vec3 fresh = IMG_THIS_PIXEL(inputImage).rgb;
        gl_FragColor = vec4(max(fresh, trail), 1.0);
    } else {
        gl_FragColor = vec4(IMG_THIS_PIXEL(trailBuffer).rgb, 1.0);
    }
}
